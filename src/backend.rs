//! The backends this build was compiled with, chosen by name at run time.

use std::fmt;

/// A compute device named on the command line: `cpu`, `cuda[:N]` or `wgpu[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU backend (`burn-flex`).
    Cpu,
    /// CUDA device `N` (`burn-cuda`).
    Cuda(usize),
    /// wgpu adapter: the default one, or discrete GPU `N` (`burn-wgpu`).
    Wgpu(Option<usize>),
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(index) => write!(f, "cuda:{index}"),
            DeviceChoice::Wgpu(None) => write!(f, "wgpu"),
            DeviceChoice::Wgpu(Some(index)) => write!(f, "wgpu:{index}"),
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, index) = match text.split_once(':') {
            Some((kind, index)) => {
                let index = index
                    .parse::<usize>()
                    .map_err(|_| format!("device `{text}`: `{index}` is not a device index"))?;
                (kind, Some(index))
            }
            None => (text, None),
        };
        match (kind, index) {
            ("cpu", None) => Ok(DeviceChoice::Cpu),
            ("cuda", index) => Ok(DeviceChoice::Cuda(index.unwrap_or(0))),
            ("wgpu", index) => Ok(DeviceChoice::Wgpu(index)),
            _ => Err(format!(
                "unknown device `{text}`: expected cpu, cuda[:N] or wgpu[:N]"
            )),
        }
    }
}

impl DeviceChoice {
    /// An error if this build lacks the backend the device needs.
    pub fn check_compiled(self) -> Result<(), String> {
        let (compiled, feature) = match self {
            DeviceChoice::Cpu => (cfg!(feature = "flex"), "flex"),
            DeviceChoice::Cuda(_) => (cfg!(feature = "cuda"), "cuda"),
            DeviceChoice::Wgpu(_) => (cfg!(feature = "wgpu"), "wgpu"),
        };
        if compiled {
            Ok(())
        } else {
            Err(format!(
                "device `{self}` needs the `{feature}` feature; rebuild with `--features {feature}`"
            ))
        }
    }
}

/// Work generic over the backend, run by [`dispatch`] on the backend a [`DeviceChoice`] names.
///
/// (A closure cannot be generic over the backend type, hence a trait.)
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B` and its device.
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output;
}

/// Runs `job` on the backend of `choice`, or says which feature the build lacks.
pub fn dispatch<J: BackendJob>(choice: DeviceChoice, job: J) -> Result<J::Output, String> {
    choice.check_compiled()?;
    match choice {
        #[cfg(feature = "flex")]
        DeviceChoice::Cpu => Ok(job.run::<burn::backend::Flex>(Default::default())),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(index) => {
            Ok(job.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::new(index)))
        }
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu(index) => {
            let device = match index {
                Some(index) => burn::backend::wgpu::WgpuDevice::DiscreteGpu(index),
                None => burn::backend::wgpu::WgpuDevice::DefaultDevice,
            };
            Ok(job.run::<burn::backend::Wgpu>(device))
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("check_compiled rejects backends this build lacks"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:1".parse(), Ok(DeviceChoice::Cuda(1)));
        assert_eq!("wgpu".parse(), Ok(DeviceChoice::Wgpu(None)));
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("cpu:1".parse::<DeviceChoice>().is_err());
    }
}
