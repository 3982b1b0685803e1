//! The fused sequence GRU (`Gru::forward_seq_fused`, `Policy::forward_seq_fused`): outputs
//! and hand-written BPTT gradients against `torch.nn.GRU` (fixtures/golden/gru_step.json)
//! and against candle autograd through the step-by-step unroll on seeded random sizes.

use candle_core::{Device, Tensor, Var};
use mrl_agent::{AgentConfig, Gru, Policy};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::golden::{ABS, REL, array, assert_close, flat, shape};
use crate::gru_golden::{assert_golden_gradients, case};

/// Element-wise `|a − e| ≤ abs + rel·|e|` between two tensors.
fn assert_tensors_close(what: &str, actual: &Tensor, expected: &Tensor, rel: f64, abs: f64) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shape");
    let e: Vec<f64> = flat(expected).into_iter().map(f64::from).collect();
    assert_close(what, &flat(actual), &e, rel, abs);
}

fn random(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn fused_outputs_and_gradients_match_torch() {
    let (g, c) = case();
    let (gru, input, h0) = (&c.gru, &c.input, &c.h0);
    let h0_2d = h0.as_tensor().reshape((c.batch, c.hidden)).unwrap();
    let (out, h_n) = gru
        .forward_seq_fused(input.as_tensor(), Some(&h0_2d))
        .unwrap();
    let f32_block = &g["float32"];
    assert_eq!(out.dims(), shape(&f32_block["output"]).as_slice());
    assert_close(
        "output",
        &flat(&out),
        &array(&f32_block["output"]).1,
        REL,
        ABS,
    );
    assert_close("h_n", &flat(&h_n), &array(&f32_block["h_n"]).1, REL, ABS);

    let grads = out.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert_golden_gradients(&g, &c, &grads);
}

/// Fused against the step-by-step autograd unroll for one seeded case; the loss weights
/// every output element differently, so each gradient path is exercised.
fn check_against_unroll(seed: u64, batch: usize, seq_len: usize, input: usize, hidden: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 1.0 / (hidden as f32).sqrt();
    let gru = Gru::from_tensors(
        &random(&mut rng, &[3 * hidden, input], scale),
        &random(&mut rng, &[3 * hidden, hidden], scale),
        &random(&mut rng, &[3 * hidden], scale),
        &random(&mut rng, &[3 * hidden], scale),
    )
    .unwrap();
    let x = Var::from_tensor(&random(&mut rng, &[batch, seq_len, input], 1.5)).unwrap();
    let h0 = Var::from_tensor(&random(&mut rng, &[batch, hidden], 0.8)).unwrap();
    let weights = random(&mut rng, &[batch, seq_len, hidden], 1.0);
    let loss_and_grads = |out: &Tensor| {
        let loss = (out * &weights).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let mut all: Vec<Tensor> = gru
            .vars()
            .iter()
            .map(|v| grads.get(v.as_tensor()).unwrap().clone())
            .collect();
        all.push(grads.get(x.as_tensor()).unwrap().clone());
        all.push(grads.get(h0.as_tensor()).unwrap().clone());
        all
    };
    let (fused, fused_hn) = gru
        .forward_seq_fused(x.as_tensor(), Some(h0.as_tensor()))
        .unwrap();
    let (stepwise, step_hn) = gru
        .forward_seq(x.as_tensor(), Some(h0.as_tensor()))
        .unwrap();
    let case = format!("seed {seed} B {batch} T {seq_len} I {input} H {hidden}");
    assert_tensors_close(&format!("{case} output"), &fused, &stepwise, 1e-5, 1e-6);
    assert_tensors_close(&format!("{case} h_n"), &fused_hn, &step_hn, 1e-5, 1e-6);
    let names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "x", "h0"];
    for ((name, a), e) in names
        .iter()
        .zip(loss_and_grads(&fused))
        .zip(loss_and_grads(&stepwise))
    {
        assert_tensors_close(&format!("{case} d{name}"), &a, &e, 1e-4, 1e-5);
    }
}

#[test]
fn fused_gradients_equal_autograd_through_the_steps() {
    for (seed, b, t, i, h) in [
        (1, 1, 1, 3, 4),
        (2, 3, 7, 5, 8),
        (3, 2, 19, 4, 16),
        (4, 5, 4, 9, 3),
        (5, 4, 33, 6, 32),
    ] {
        check_against_unroll(seed, b, t, i, h);
    }
}

#[test]
fn fused_policy_equals_the_unrolled_policy_with_gradients() {
    let config = AgentConfig {
        hidden: 16,
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = random(&mut rng, &[3, 12, config.input_dim()], 1.0);
    let a = policy.forward_seq_fused(&x, None).unwrap();
    let b = policy.forward_seq(&x, None).unwrap();
    assert_tensors_close("logits", &a.logits, &b.logits, 1e-5, 1e-6);
    assert_tensors_close("values", &a.values, &b.values, 1e-5, 1e-6);
    let (h_a, h_b) = (a.h_n.as_ref().unwrap(), b.h_n.as_ref().unwrap());
    assert_tensors_close("h_n", h_a, h_b, 1e-5, 1e-6);
    let loss = |o: &mrl_agent::SeqOutput| {
        (o.logits.sqr().unwrap().sum_all().unwrap() + o.values.sum_all().unwrap())
            .unwrap()
            .backward()
            .unwrap()
    };
    let (ga, gb) = (loss(&a), loss(&b));
    for (name, var) in policy.parameters() {
        assert_tensors_close(
            name,
            ga.get(var.as_tensor()).unwrap(),
            gb.get(var.as_tensor()).unwrap(),
            1e-4,
            1e-5,
        );
    }
}

/// Both fused paths, as `(logits, values)`.
type FusedPath = fn(&Policy, &Tensor, Option<&Tensor>) -> mrl_agent::Result<(Tensor, Tensor)>;

#[test]
fn fused_paths_reject_what_the_unroll_rejects() {
    let config = AgentConfig {
        hidden: 8,
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, 0).unwrap();
    let zeros =
        |shape: &[usize]| Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap();
    let paths: [(&str, FusedPath); 2] = [
        ("forward_seq_fused", |p, x, h0| {
            p.forward_seq_fused(x, h0).map(|o| (o.logits, o.values))
        }),
        ("forward_seq_train", |p, x, h0| p.forward_seq_train(x, h0)),
    ];
    let width = config.input_dim();
    for (name, path) in paths {
        let err = path(&policy, &zeros(&[2, 0, width]), None).unwrap_err();
        assert!(
            matches!(err, mrl_agent::Error::EmptySequence { .. }),
            "{name}: {err}"
        );
        let x = zeros(&[2, 3, width]);
        let err = path(&policy, &x, Some(&zeros(&[3, 8]))).unwrap_err();
        assert!(err.to_string().contains("h0"), "{name}: {err}");
        let err = path(&policy, &zeros(&[2, 3, width + 1]), None).unwrap_err();
        assert!(
            matches!(err, mrl_agent::Error::ShapeMismatch { .. }),
            "{name}: {err}"
        );
    }
}

/// `Policy::forward_seq_train` (the whole network as one node on the CPU) against candle
/// autograd through the step-by-step `forward_seq`: outputs, every parameter's gradient and
/// `h0`'s, on seeded random sizes (B = 40 spans several blocks of trials).
#[test]
fn whole_network_op_equals_autograd_through_the_unroll() {
    for (seed, obs_dim, n_actions, hidden, b, t, with_h0) in [
        (1, 1, 5, 8, 1, 1, false),
        (2, 3, 3, 16, 3, 9, true),
        (3, 14, 3, 32, 40, 17, false),
        (4, 2, 10, 12, 5, 30, true),
    ] {
        let config = AgentConfig {
            obs_dim,
            n_actions,
            hidden,
            ..Default::default()
        };
        let policy = Policy::new(&config, &Device::Cpu, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
        let x = random(&mut rng, &[b, t, config.input_dim()], 1.5);
        let h0 = with_h0.then(|| Var::from_tensor(&random(&mut rng, &[b, hidden], 0.8)).unwrap());
        let h0_t = h0.as_ref().map(|v| v.as_tensor());
        let (logits, values) = policy.forward_seq_train(&x, h0_t).unwrap();
        let reference = policy.forward_seq(&x, h0_t).unwrap();
        let what = |s: &str| format!("seed {seed}: {s}");
        assert_tensors_close(&what("logits"), &logits, &reference.logits, 1e-5, 1e-6);
        assert_tensors_close(&what("values"), &values, &reference.values, 1e-5, 1e-6);
        // A loss that weighs every output differently.
        let w_logits = random(&mut rng, &[b, t, n_actions], 1.0);
        let w_values = random(&mut rng, &[b, t], 1.0);
        let loss = |l: &Tensor, v: &Tensor| {
            let a = (l.sqr().unwrap() * &w_logits).unwrap().sum_all().unwrap();
            let c = (v * &w_values).unwrap().sum_all().unwrap();
            (a + c).unwrap().backward().unwrap()
        };
        let fused = loss(&logits, &values);
        let unrolled = loss(&reference.logits, &reference.values);
        for (name, var) in policy.parameters() {
            assert_tensors_close(
                &what(name),
                fused.get(var.as_tensor()).unwrap(),
                unrolled.get(var.as_tensor()).unwrap(),
                1e-4,
                1e-5,
            );
        }
        if let Some(h0) = &h0 {
            assert_tensors_close(
                &what("h0"),
                fused.get(h0.as_tensor()).unwrap(),
                unrolled.get(h0.as_tensor()).unwrap(),
                1e-4,
                1e-5,
            );
        }
    }
}
