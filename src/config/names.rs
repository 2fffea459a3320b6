//! Config values that are one of a few names: typed enums written and read by their names.

/// An enum of named values: serde by name, `name()`, the list `NAMES`, `FromStr` for command
/// line flags (an error listing the names), `Display`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value's name, as written in configs.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name written in configs and files.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(format!(
                        "{s:?}: expected {}",
                        $crate::config::names::one_of(Self::NAMES)
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use named_enum;

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
pub fn one_of(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match q.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

named_enum! {
    /// `train.precision`: whether forward passes run under bf16 autocast.
    pub enum Precision {
        /// bf16 autocast on CUDA, fp32 on the CPU.
        Auto = "auto",
        /// fp32 everywhere.
        Fp32 = "fp32",
        /// bf16 autocast (CUDA only).
        Bf16 = "bf16",
    }
}

named_enum! {
    /// `train.snapshots`: which weights are kept besides the checkpoint.
    pub enum Snapshots {
        /// None.
        None = "none",
        /// The weights at the end of every schedule cycle (SGDR snapshot ensembles).
        Restarts = "restarts",
    }
}

named_enum! {
    /// `lr_find.mode`: the shape of the range test's ramp.
    pub enum RampMode {
        /// Geometric (fastai, pytorch-lr-finder).
        Exp = "exp",
        /// Linear (Smith's).
        Linear = "linear",
    }
}

named_enum! {
    /// `lr_find.convention`: whose range test is reproduced.
    pub enum FindConvention {
        /// pytorch-lr-finder: `end_lr` reached at the last step; a non-finite loss stops it.
        LrFinder = "lr_finder",
        /// fastai's `LRFinder`: `lr_k = start·(end/start)^(k/num_it)`, on past a NaN.
        Fastai = "fastai",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_flags() {
        for p in [Precision::Auto, Precision::Fp32, Precision::Bf16] {
            let v = toml::Value::try_from(p).unwrap();
            assert_eq!(v.as_str(), Some(p.name()));
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
            assert_eq!(v.try_into::<Precision>().unwrap(), p);
        }
        assert_eq!(
            "fp16".parse::<Precision>().unwrap_err(),
            r#""fp16": expected "auto", "fp32" or "bf16""#
        );
        assert_eq!(FindConvention::LrFinder.to_string(), "lr_finder");
        assert_eq!(one_of(&["a", "b"]), r#""a" or "b""#);
    }
}

/// `train.device`: where a run trains. Written and read as `"auto"` (a GPU when there is one,
/// resolved at run time by [`crate::train::device::resolve_device`]), `"cpu"`, `"cuda"` or
/// `"cuda:N"`; `"cuda"` stays `"cuda"` when written back, so a config's text (and its run id)
/// never changes by being read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA when available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device: `None` is `"cuda"` (the first), `Some(n)` is `"cuda:n"`.
    Cuda(Option<usize>),
}

impl DeviceSpec {
    /// The device, `None` for `auto`.
    pub fn device(self) -> Option<tch::Device> {
        match self {
            DeviceSpec::Auto => None,
            DeviceSpec::Cpu => Some(tch::Device::Cpu),
            DeviceSpec::Cuda(n) => Some(tch::Device::Cuda(n.unwrap_or(0))),
        }
    }

    /// A CUDA device (`"cuda"` or `"cuda:N"`).
    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceSpec::Cuda(Some(n))),
                _ => Err("expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"".to_string()),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod device_tests {
    use super::DeviceSpec;

    #[test]
    fn device_names_read_and_write_back_unchanged() {
        for s in ["auto", "cpu", "cuda", "cuda:0", "cuda:3"] {
            let d: DeviceSpec = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        assert_eq!(
            "cuda".parse::<DeviceSpec>().unwrap().device(),
            Some(tch::Device::Cuda(0))
        );
        for bad in ["gpu", "cuda:", "cuda:x", "CPU", ""] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains("\"cuda:N\""), "{e}");
        }
    }
}
