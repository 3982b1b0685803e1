//! Checkpoints: byte-identical round trips, seeded determinism, and clear mismatch errors.

use std::path::{Path, PathBuf};

use candle_core::Device;
use mrl_agent::{AgentConfig, Error, Policy, PolicyKind, sidecar_path};

/// Saves a seed-1 policy with `config` as `dir/name.safetensors`; returns the path.
fn saved(dir: &Path, name: &str, config: &AgentConfig) -> PathBuf {
    let path = dir.join(format!("{name}.safetensors"));
    Policy::new(config, &Device::Cpu, 1)
        .unwrap()
        .save(&path)
        .unwrap();
    path
}

fn with_hidden(hidden: usize) -> AgentConfig {
    AgentConfig {
        hidden,
        ..Default::default()
    }
}

#[test]
fn save_load_save_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [PolicyKind::Rl2, PolicyKind::Mlp] {
        let config = AgentConfig {
            kind,
            ..with_hidden(32)
        };
        let a = saved(dir.path(), kind.as_str(), &config);
        let loaded = Policy::load(&a, &Device::Cpu).unwrap();
        assert_eq!(loaded.config(), &config);
        let b = dir
            .path()
            .join(format!("{}-again.safetensors", kind.as_str()));
        loaded.save(&b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let (side_a, side_b) = (sidecar_path(&a), sidecar_path(&b));
        assert_eq!(
            std::fs::read(&side_a).unwrap(),
            std::fs::read(side_b).unwrap()
        );
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(side_a).unwrap()).unwrap();
        assert_eq!(meta["kind"], kind.as_str());
        assert_eq!(meta["dims"]["input"], 19);
        assert_eq!(meta["crate_version"], env!("CARGO_PKG_VERSION"));
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let config = AgentConfig::default();
    let bytes = |seed| {
        Policy::new(&config, &Device::Cpu, seed)
            .unwrap()
            .to_safetensors()
            .unwrap()
    };
    assert_eq!(bytes(5), bytes(5));
    assert_ne!(bytes(5), bytes(6));
}

#[test]
fn shape_mismatch_names_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let big = saved(dir.path(), "big", &AgentConfig::default());
    // Swap in the sidecar of a smaller network: the weights no longer fit it.
    let small = saved(dir.path(), "small", &with_hidden(32));
    std::fs::copy(sidecar_path(&small), sidecar_path(&big)).unwrap();
    let err = Policy::load(&big, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ParameterMismatch { .. }));
    assert!(
        msg.contains("gru.weight_hh_l0: shape [384, 128] in file, expected [96, 32]"),
        "{msg}"
    );
    assert!(msg.contains("big.safetensors"), "{msg}");
}

#[test]
fn kind_mismatch_lists_missing_and_unexpected_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let rl2 = saved(dir.path(), "rl2", &AgentConfig::default());
    let mlp_config = AgentConfig {
        kind: PolicyKind::Mlp,
        ..Default::default()
    };
    let mlp = saved(dir.path(), "mlp", &mlp_config);
    std::fs::copy(sidecar_path(&mlp), sidecar_path(&rl2)).unwrap();
    let msg = Policy::load(&rl2, &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("body.0.weight: missing"), "{msg}");
    assert!(msg.contains("gru.weight_ih_l0: unexpected tensor"), "{msg}");
}

#[test]
fn missing_or_foreign_sidecar_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = saved(dir.path(), "w", &with_hidden(4));
    let side = sidecar_path(&p);
    let text = std::fs::read_to_string(&side).unwrap();
    std::fs::write(
        &side,
        text.replace("mrl-agent-checkpoint", "something-else"),
    )
    .unwrap();
    assert!(matches!(
        Policy::load(&p, &Device::Cpu),
        Err(Error::BadSidecar { .. })
    ));
    std::fs::remove_file(&side).unwrap();
    assert!(matches!(
        Policy::load(&p, &Device::Cpu),
        Err(Error::BadSidecar { .. })
    ));
    std::fs::write(&side, "{not json").unwrap();
    assert!(matches!(
        Policy::load(&p, &Device::Cpu),
        Err(Error::Json { .. })
    ));
}

#[test]
fn truncated_weights_file_is_a_safetensors_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = saved(dir.path(), "w", &with_hidden(4));
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        Policy::load(&p, &Device::Cpu),
        Err(Error::Safetensors { .. })
    ));
}

#[test]
fn tensors_round_trip_through_from_tensors() {
    let config = with_hidden(8);
    let a = Policy::new(&config, &Device::Cpu, 3).unwrap();
    let b = Policy::from_tensors(&config, &a.tensors(), &Device::Cpu).unwrap();
    assert_eq!(a.to_safetensors().unwrap(), b.to_safetensors().unwrap());
    let mut missing = a.tensors();
    missing.remove("value_head.bias");
    let msg = Policy::from_tensors(&config, &missing, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("tensor map") && msg.contains("value_head.bias: missing"),
        "{msg}"
    );
}
