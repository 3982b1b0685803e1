//! `Gru` against `torch.nn.GRU` (fixtures/golden/gru_step.json): outputs, final state and
//! the gradients of `sum(output²)` w.r.t. the weights, the input and `h0`.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use mrl_agent::Gru;

use crate::golden::{ABS, REL, array, assert_close, flat, load, shape, tensor};

/// The golden GRU, its input and `h0` as `Var`s (`h0` shaped `(1, B, H)` as in torch).
pub(crate) struct Case {
    pub(crate) gru: Gru,
    pub(crate) input: Var,
    pub(crate) h0: Var,
    pub(crate) batch: usize,
    pub(crate) hidden: usize,
}

/// The parsed golden file and its [`Case`].
pub(crate) fn case() -> (serde_json::Value, Case) {
    let g = load("gru_step.json");
    let w = &g["weights"];
    let gru = Gru::from_tensors(
        &tensor(&w["weight_ih_l0"]),
        &tensor(&w["weight_hh_l0"]),
        &tensor(&w["bias_ih_l0"]),
        &tensor(&w["bias_hh_l0"]),
    )
    .unwrap();
    let input = Var::from_tensor(&tensor(&g["input"])).unwrap();
    let h0 = Var::from_tensor(&tensor(&g["h0"])).unwrap();
    let h0_shape = shape(&g["h0"]); // [1, B, H]
    let (batch, hidden) = (h0_shape[1], h0_shape[2]);
    assert_eq!(gru.hidden_size(), hidden);
    (
        g,
        Case {
            gru,
            input,
            h0,
            batch,
            hidden,
        },
    )
}

#[test]
fn sequence_outputs_and_final_state_match_torch() {
    let (g, c) = case();
    let h0 = c.h0.as_tensor().reshape((c.batch, c.hidden)).unwrap();
    let (out, h_n) = c.gru.forward_seq(c.input.as_tensor(), Some(&h0)).unwrap();
    assert_eq!(out.dims(), shape(&g["float32"]["output"]).as_slice());
    assert_close(
        "output",
        &flat(&out),
        &array(&g["float32"]["output"]).1,
        REL,
        ABS,
    );
    assert_close("h_n", &flat(&h_n), &array(&g["float32"]["h_n"]).1, REL, ABS);
    // Against the float64 reference too: the f32 result is within f32 rounding of the truth.
    assert_close(
        "output vs f64",
        &flat(&out),
        &array(&g["float64"]["output"]).1,
        REL,
        ABS,
    );
}

#[test]
fn gradients_of_sum_of_squares_match_torch() {
    let (g, c) = case();
    let h0 = c.h0.as_tensor().reshape((c.batch, c.hidden)).unwrap();
    let (out, _) = c.gru.forward_seq(c.input.as_tensor(), Some(&h0)).unwrap();
    let loss = out.sqr().unwrap().sum_all().unwrap();
    let want_loss = g["float32"]["loss_sum_output_sq"].as_f64().unwrap();
    assert_close(
        "loss",
        &[loss.to_scalar::<f32>().unwrap()],
        &[want_loss],
        REL,
        ABS,
    );
    let grads = loss.backward().unwrap();
    assert_golden_gradients(&g, &c, &grads);
}

/// Asserts the gradients of `sum(output²)` w.r.t. the weights, the input and `h0` against
/// the golden float32 block.
pub(crate) fn assert_golden_gradients(g: &serde_json::Value, c: &Case, grads: &GradStore) {
    let expected = &g["float32"]["grad_of_sum_output_sq"];
    let [w_ih, w_hh, b_ih, b_hh] = c.gru.vars();
    for (name, var) in [
        ("weight_ih_l0", w_ih),
        ("weight_hh_l0", w_hh),
        ("bias_ih_l0", b_ih),
        ("bias_hh_l0", b_hh),
        ("input", &c.input),
        ("h0", &c.h0),
    ] {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let (want_shape, want) = array(&expected[name]);
        assert_eq!(grad.dims(), want_shape.as_slice(), "{name} shape");
        assert_close(name, &flat(grad), &want, REL, ABS);
    }
}

#[test]
fn one_step_at_a_time_equals_the_unroll() {
    let (g, c) = case();
    let mut h = c.h0.as_tensor().reshape((c.batch, c.hidden)).unwrap();
    let seq_len = shape(&g["input"])[1];
    let mut outs = Vec::new();
    for t in 0..seq_len {
        let x_t = c
            .input
            .as_tensor()
            .narrow(1, t, 1)
            .unwrap()
            .squeeze(1)
            .unwrap();
        h = c.gru.step(&x_t, &h).unwrap();
        outs.push(h.clone());
    }
    let out = Tensor::stack(&outs, 1).unwrap();
    assert_close(
        "stepwise output",
        &flat(&out),
        &array(&g["float32"]["output"]).1,
        REL,
        ABS,
    );
    // and a T = 1 unroll carrying h gives the same numbers
    let mut h = c.h0.as_tensor().reshape((c.batch, c.hidden)).unwrap();
    for (t, want) in outs.iter().enumerate() {
        let x_t = c.input.as_tensor().narrow(1, t, 1).unwrap();
        let (o, h_next) = c.gru.forward_seq(&x_t, Some(&h)).unwrap();
        assert_eq!(flat(&o), flat(&h_next));
        assert_eq!(flat(&h_next), flat(want));
        h = h_next;
    }
}

#[test]
fn mis_shaped_weights_are_rejected() {
    let (g, _) = case();
    let w = &g["weights"];
    let err = Gru::from_tensors(
        &tensor(&w["weight_ih_l0"]),
        &tensor(&w["weight_ih_l0"]), // (3H, I) where (3H, H) is expected
        &tensor(&w["bias_ih_l0"]),
        &tensor(&w["bias_hh_l0"]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("weight_hh_l0"), "{err}");
}
