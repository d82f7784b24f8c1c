//! The backends this build was compiled with, chosen by name at run time.

use std::fmt;

/// A device, device list or precision this build cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// A device index that is not a number.
    #[error("device `{text}`: `{index}` is not a device index")]
    BadIndex {
        /// The device as written.
        text: String,
        /// The index as written.
        index: String,
    },
    /// A device of no backend.
    #[error("unknown device `{text}`: expected cpu, cuda[:N] or wgpu[:N]")]
    UnknownDevice {
        /// The device as written.
        text: String,
    },
    /// A device whose backend this build lacks.
    #[error(
        "device `{device}` needs the `{feature}` feature; rebuild with `--features {feature}`"
    )]
    NotCompiled {
        /// The device.
        device: DeviceChoice,
        /// The cargo feature of its backend.
        feature: &'static str,
    },
    /// A precision of no name.
    #[error("unknown precision `{text}`: expected f32, f16 or bf16")]
    UnknownPrecision {
        /// The precision as written.
        text: String,
    },
    /// Devices of several backends in one list.
    #[error(
        "devices `{text}`: `{other}` is not a {backend} device; data-parallel training uses one \
         backend"
    )]
    MixedBackends {
        /// The list as written.
        text: String,
        /// The first device of another backend.
        other: DeviceChoice,
        /// The first device's backend.
        backend: &'static str,
    },
    /// A precision the device's backend does not have.
    #[error("precision {precision} is not available on device `{device}`")]
    Unavailable {
        /// The precision.
        precision: Precision,
        /// The device.
        device: DeviceChoice,
    },
}

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
    type Err = BackendError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, index) = match text.split_once(':') {
            Some((kind, index)) => {
                let index = index.parse::<usize>().map_err(|_| BackendError::BadIndex {
                    text: text.to_string(),
                    index: index.to_string(),
                })?;
                (kind, Some(index))
            }
            None => (text, None),
        };
        match (kind, index) {
            ("cpu", None) => Ok(DeviceChoice::Cpu),
            ("cuda", index) => Ok(DeviceChoice::Cuda(index.unwrap_or(0))),
            ("wgpu", index) => Ok(DeviceChoice::Wgpu(index)),
            _ => Err(BackendError::UnknownDevice {
                text: text.to_string(),
            }),
        }
    }
}

impl DeviceChoice {
    /// The device's backend: `cpu`, `cuda` or `wgpu`.
    pub fn backend(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda(_) => "cuda",
            DeviceChoice::Wgpu(_) => "wgpu",
        }
    }

    /// An error if this build lacks the backend the device needs.
    pub fn check_compiled(self) -> Result<(), BackendError> {
        let (compiled, feature) = match self {
            DeviceChoice::Cpu => (cfg!(feature = "flex"), "flex"),
            DeviceChoice::Cuda(_) => (cfg!(feature = "cuda"), "cuda"),
            DeviceChoice::Wgpu(_) => (cfg!(feature = "wgpu"), "wgpu"),
        };
        if compiled {
            Ok(())
        } else {
            Err(BackendError::NotCompiled {
                device: self,
                feature,
            })
        }
    }
}

/// The float type a backend computes in: `f32`, or the half types where the backend has them
/// (`f16` on CUDA and wgpu, `bf16` on CUDA). Half precision here is the whole graph in that
/// type (weights, activations, gradients), not mixed precision with `f32` master weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = BackendError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "f32" | "fp32" => Ok(Precision::F32),
            "f16" | "fp16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(BackendError::UnknownPrecision {
                text: text.to_string(),
            }),
        }
    }
}

/// Device memory of a cubecl device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceMemory {
    /// Bytes held by live tensors.
    pub in_use: u64,
    /// Bytes the memory pools have reserved from the device (what other processes cannot use;
    /// comparable to `torch.cuda.memory_reserved`).
    pub reserved: u64,
}

/// The memory the cubecl runtime of `choice` holds now; `None` on the CPU or when the runtime
/// cannot say.
pub fn device_memory(choice: DeviceChoice) -> Option<DeviceMemory> {
    match choice {
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(index) => memory_of::<burn::cubecl::cuda::CudaRuntime>(
            &burn::backend::cuda::CudaDevice::new(index),
        ),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu(index) => {
            memory_of::<burn::backend::wgpu::WgpuRuntime>(&wgpu_device(index))
        }
        _ => None,
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn memory_of<R: burn::cubecl::Runtime>(device: &R::Device) -> Option<DeviceMemory> {
    let usage = R::client(device).memory_usage().ok()?;
    Some(DeviceMemory {
        in_use: usage.bytes_in_use,
        reserved: usage.bytes_reserved,
    })
}

/// The wgpu device of a `wgpu[:N]` choice: discrete GPU `N`, or the default adapter.
#[cfg(feature = "wgpu")]
fn wgpu_device(index: Option<usize>) -> burn::backend::wgpu::WgpuDevice {
    match index {
        Some(index) => burn::backend::wgpu::WgpuDevice::DiscreteGpu(index),
        None => burn::backend::wgpu::WgpuDevice::DefaultDevice,
    }
}

/// Several devices of one backend for data-parallel training, named on the command line as a
/// comma-separated list: `cuda:0,cuda:1`, `wgpu:0,wgpu:1`, or `cpu,cpu` (replicas sharing the
/// CPU, for tests). A single device is a list of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList(Vec<DeviceChoice>);

impl DeviceList {
    /// The devices, the first being the main one.
    pub fn devices(&self) -> &[DeviceChoice] {
        &self.0
    }
}

impl From<DeviceChoice> for DeviceList {
    fn from(choice: DeviceChoice) -> Self {
        Self(vec![choice])
    }
}

impl fmt::Display for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|d| d.to_string()).collect();
        write!(f, "{}", names.join(","))
    }
}

impl std::str::FromStr for DeviceList {
    type Err = BackendError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let choices = text
            .split(',')
            .map(|name| name.trim().parse::<DeviceChoice>())
            .collect::<Result<Vec<_>, _>>()?;
        let first = choices[0];
        if let Some(other) = choices
            .iter()
            .find(|c| std::mem::discriminant(*c) != std::mem::discriminant(&first))
        {
            return Err(BackendError::MixedBackends {
                text: text.to_string(),
                other: *other,
                backend: first.backend(),
            });
        }
        Ok(Self(choices))
    }
}

/// Work generic over the backend, run by [`dispatch`] on the backend and devices a
/// [`DeviceList`] names. (A closure cannot be generic over the backend type, hence a trait.)
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B` and its devices (at least one; the first is the main one).
    fn run<B: burn::tensor::backend::Backend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// The main (first) device of the list a job runs on, for jobs that use one device.
pub fn main_device<D>(devices: Vec<D>) -> D {
    devices
        .into_iter()
        .next()
        .expect("a device list is never empty")
}

/// Runs `job` on the backend of `list`'s devices computing in `precision`, or says why this
/// build or backend cannot (the feature it lacks, or a precision the backend does not have).
pub fn dispatch<J: BackendJob>(
    list: &DeviceList,
    precision: Precision,
    job: J,
) -> Result<J::Output, BackendError> {
    let first = list.0[0];
    first.check_compiled()?;
    match (first, precision) {
        #[cfg(feature = "flex")]
        (DeviceChoice::Cpu, Precision::F32) => {
            // One device: its steps run on this thread, rayon's worker 0 from here on. Several
            // (`cpu,cpu`): each replica steps on a thread of its own while this one waits
            // outside rayon, so it stays out of the pool and leaves it every worker.
            prepare_cpu(list.0.len() == 1);
            Ok(job.run::<burn::backend::Flex>(vec![Default::default(); list.0.len()]))
        }
        #[cfg(feature = "cuda")]
        (DeviceChoice::Cuda(_), Precision::F32) => Ok(job.run::<burn::backend::Cuda>(list.cuda())),
        #[cfg(feature = "cuda")]
        (DeviceChoice::Cuda(_), Precision::F16) => {
            Ok(job.run::<burn::backend::Cuda<burn::tensor::f16>>(list.cuda()))
        }
        #[cfg(feature = "cuda")]
        (DeviceChoice::Cuda(_), Precision::Bf16) => {
            Ok(job.run::<burn::backend::Cuda<burn::tensor::bf16>>(list.cuda()))
        }
        #[cfg(feature = "wgpu")]
        (DeviceChoice::Wgpu(_), Precision::F32) => Ok(job.run::<burn::backend::Wgpu>(list.wgpu())),
        #[cfg(feature = "wgpu")]
        (DeviceChoice::Wgpu(_), Precision::F16) => {
            Ok(job.run::<burn::backend::Wgpu<burn::tensor::f16>>(list.wgpu()))
        }
        _ => Err(BackendError::Unavailable {
            precision,
            device: first,
        }),
    }
}

/// Prepares the process for a CPU run: the allocator keeps freed memory for the next step
/// ([`crate::kernels::keep_freed_memory`]) and, when `main_thread_computes` (the run's steps
/// run on the calling thread, the main one), that thread becomes worker 0 of rayon's global
/// pool ([`crate::kernels::adopt_main_thread`]). Where either cannot be done (not the main
/// thread, the pool exists, another allocator), the run goes on without it and a debug line
/// says why.
#[cfg(feature = "flex")]
pub fn prepare_cpu(main_thread_computes: bool) {
    if main_thread_computes {
        match crate::kernels::adopt_main_thread() {
            Ok(()) => tracing::debug!(
                "rayon's global pool: the main thread and {} more",
                rayon::current_num_threads() - 1
            ),
            Err(reason) => tracing::debug!("{reason}; the CPU kernels run as they are"),
        }
    }
    if !crate::kernels::keep_freed_memory() {
        tracing::debug!("the allocator is not glibc's: freed memory goes back as it does");
    }
}

impl DeviceList {
    #[cfg(feature = "cuda")]
    fn cuda(&self) -> Vec<burn::backend::cuda::CudaDevice> {
        self.0
            .iter()
            .map(|choice| match choice {
                DeviceChoice::Cuda(index) => burn::backend::cuda::CudaDevice::new(*index),
                _ => unreachable!("a device list has one backend"),
            })
            .collect()
    }

    #[cfg(feature = "wgpu")]
    fn wgpu(&self) -> Vec<burn::backend::wgpu::WgpuDevice> {
        self.0
            .iter()
            .map(|choice| match choice {
                DeviceChoice::Wgpu(index) => wgpu_device(*index),
                _ => unreachable!("a device list has one backend"),
            })
            .collect()
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

    #[test]
    fn parses_precisions_and_refuses_what_the_device_lacks() {
        for (text, precision) in [
            ("f32", Precision::F32),
            ("fp16", Precision::F16),
            ("bf16", Precision::Bf16),
        ] {
            assert_eq!(text.parse(), Ok(precision));
        }
        assert_eq!(Precision::Bf16.to_string(), "bf16");
        assert!("f64"
            .parse::<Precision>()
            .unwrap_err()
            .to_string()
            .contains("f32, f16 or bf16"));

        struct Count;
        impl BackendJob for Count {
            type Output = usize;
            fn run<B: burn::tensor::backend::Backend>(self, devices: Vec<B::Device>) -> usize {
                devices.len()
            }
        }
        let cpu = DeviceList::from(DeviceChoice::Cpu);
        let refused = dispatch(&cpu, Precision::F16, Count).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "precision f16 is not available on device `cpu`"
        );
        assert_eq!(dispatch(&cpu, Precision::F32, Count), Ok(1));
        let two: DeviceList = "cpu,cpu".parse().unwrap();
        assert_eq!(dispatch(&two, Precision::F32, Count), Ok(2));
    }

    #[test]
    fn parses_device_lists_of_one_backend() {
        let list: DeviceList = "cuda:0,cuda:1".parse().unwrap();
        assert_eq!(
            list.devices(),
            &[DeviceChoice::Cuda(0), DeviceChoice::Cuda(1)]
        );
        assert_eq!(list.to_string(), "cuda:0,cuda:1");
        assert_eq!("cpu".parse::<DeviceList>().unwrap().devices().len(), 1);
        let mixed = "cuda:0,wgpu".parse::<DeviceList>().unwrap_err().to_string();
        assert!(mixed.contains("`wgpu` is not a cuda device"), "{mixed}");
        assert!("cuda:0,,cuda:1".parse::<DeviceList>().is_err());
    }
}
