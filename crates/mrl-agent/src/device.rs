//! Run-time device choice: CPU by default, CUDA when built with the `cuda` feature and a
//! GPU is present, and an explicit, logged fallback to CPU otherwise.

use candle_core::Device;
use serde::{Deserialize, Serialize};

/// Which device to run the policy on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The CPU (the default; the fused rollout step runs here).
    #[default]
    Cpu,
    /// CUDA device 0 if the crate was built with `cuda` and a GPU answers, else the CPU.
    Auto,
    /// A given CUDA device; falls back to the CPU with a warning when unavailable.
    Cuda {
        /// CUDA device ordinal.
        ordinal: usize,
    },
}

/// Resolves a [`DeviceChoice`] to a candle [`Device`]. Never fails: an unavailable GPU
/// falls back to the CPU, logged with `tracing` (info for [`DeviceChoice::Auto`], warn
/// for an explicit [`DeviceChoice::Cuda`]).
pub fn select_device(choice: DeviceChoice) -> Device {
    let (ordinal, explicit) = match choice {
        DeviceChoice::Cpu => return Device::Cpu,
        DeviceChoice::Auto => (0, false),
        DeviceChoice::Cuda { ordinal } => (ordinal, true),
    };
    match cuda_device(ordinal) {
        Ok(device) => {
            tracing::info!(ordinal, "using CUDA device");
            device
        }
        Err(reason) if explicit => {
            tracing::warn!(ordinal, %reason, "CUDA requested but unavailable, falling back to CPU");
            Device::Cpu
        }
        Err(reason) => {
            tracing::info!(%reason, "no CUDA device, using CPU");
            Device::Cpu
        }
    }
}

/// Whether this build can use CUDA at all (the `cuda` feature).
pub fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> std::result::Result<Device, String> {
    Device::new_cuda(ordinal).map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> std::result::Result<Device, String> {
    Err("built without the `cuda` feature".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_by_default_and_fallback_without_cuda() {
        assert!(select_device(DeviceChoice::default()).is_cpu());
        if !cuda_compiled() {
            assert!(select_device(DeviceChoice::Auto).is_cpu());
            assert!(select_device(DeviceChoice::Cuda { ordinal: 0 }).is_cpu());
        }
    }

    #[test]
    fn serde_names() {
        let c: DeviceChoice = serde_json::from_str(r#"{"cuda": {"ordinal": 1}}"#).unwrap();
        assert_eq!(c, DeviceChoice::Cuda { ordinal: 1 });
        assert_eq!(
            serde_json::to_string(&DeviceChoice::Auto).unwrap(),
            r#""auto""#
        );
    }
}
