//! TEST STAND-IN, not Firecracker: the request and configuration bodies of Firecracker's API
//! (v1.16 swagger), with the same required fields, defaults and unknown-field refusals, so that
//! serde produces the same deserialization messages as the real server.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The command line Firecracker gives a kernel when `boot_args` is absent.
pub const DEFAULT_KERNEL_CMDLINE: &str = "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux \
                                          i8042.nomux i8042.dumbkbd swiotlb=noforce";

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    pub kernel_image_path: String,
    pub initrd_path: Option<String>,
    pub boot_args: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct TokenBucket {
    pub size: u64,
    pub one_time_burst: Option<u64>,
    pub refill_time: u64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimiter {
    pub bandwidth: Option<TokenBucket>,
    pub ops: Option<TokenBucket>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum CacheType {
    #[default]
    Unsafe,
    Writeback,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum IoEngine {
    Async,
    #[default]
    Sync,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    pub drive_id: String,
    pub partuuid: Option<String>,
    pub is_root_device: bool,
    #[serde(default)]
    pub cache_type: CacheType,
    pub is_read_only: Option<bool>,
    pub path_on_host: Option<String>,
    pub rate_limiter: Option<RateLimiter>,
    pub io_engine: Option<IoEngine>,
    pub socket: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DriveUpdate {
    pub drive_id: String,
    pub path_on_host: Option<String>,
    pub rate_limiter: Option<RateLimiter>,
}

/// A guest MAC address, `xx:xx:xx:xx:xx:xx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn parse(s: &str) -> Option<Mac> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return None;
        }
        let mut bytes = [0u8; 6];
        for (b, p) in bytes.iter_mut().zip(parts) {
            if p.len() != 2 {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        Some(Mac(bytes))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Mac::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("The provided MAC address is invalid."))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    pub iface_id: String,
    pub host_dev_name: String,
    pub guest_mac: Option<Mac>,
    pub mtu: Option<u16>,
    pub rx_rate_limiter: Option<RateLimiter>,
    pub tx_rate_limiter: Option<RateLimiter>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterfaceUpdate {
    pub iface_id: String,
    pub rx_rate_limiter: Option<RateLimiter>,
    pub tx_rate_limiter: Option<RateLimiter>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum CpuTemplate {
    C3,
    T2,
    T2S,
    None,
    T2CL,
    T2A,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum HugePages {
    #[default]
    None,
    #[serde(rename = "2M")]
    Hugetlbfs2M,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    pub vcpu_count: u8,
    pub mem_size_mib: usize,
    #[serde(default)]
    pub smt: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_template: Option<CpuTemplate>,
    #[serde(default)]
    pub track_dirty_pages: bool,
    #[serde(default)]
    pub huge_pages: HugePages,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            vcpu_count: 1,
            mem_size_mib: 128,
            smt: false,
            cpu_template: None,
            track_dirty_pages: false,
            huge_pages: HugePages::None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MachineConfigUpdate {
    #[serde(default)]
    pub vcpu_count: Option<u8>,
    #[serde(default)]
    pub mem_size_mib: Option<usize>,
    #[serde(default)]
    pub smt: Option<bool>,
    #[serde(default)]
    pub cpu_template: Option<CpuTemplate>,
    #[serde(default)]
    pub track_dirty_pages: Option<bool>,
    #[serde(default)]
    pub huge_pages: Option<HugePages>,
}

impl From<MachineConfig> for MachineConfigUpdate {
    fn from(c: MachineConfig) -> Self {
        MachineConfigUpdate {
            vcpu_count: Some(c.vcpu_count),
            mem_size_mib: Some(c.mem_size_mib),
            smt: Some(c.smt),
            cpu_template: c.cpu_template,
            track_dirty_pages: Some(c.track_dirty_pages),
            huge_pages: Some(c.huge_pages),
        }
    }
}

impl MachineConfig {
    /// Applies `u` with Firecracker's checks; the message is the one Firecracker gives.
    pub fn updated(&self, u: &MachineConfigUpdate) -> Result<MachineConfig, &'static str> {
        let vcpu_count = u.vcpu_count.unwrap_or(self.vcpu_count);
        let smt = u.smt.unwrap_or(self.smt);
        if vcpu_count == 0 || vcpu_count > 32 || (smt && vcpu_count > 1 && vcpu_count % 2 == 1) {
            return Err(
                "The number of vCPUs must be greater than 0, less than 32 and must be 1 \
                        or an even number if SMT is enabled.",
            );
        }
        let mem_size_mib = u.mem_size_mib.unwrap_or(self.mem_size_mib);
        let huge_pages = u.huge_pages.unwrap_or(self.huge_pages);
        let multiple = if huge_pages == HugePages::Hugetlbfs2M {
            2
        } else {
            1
        };
        if mem_size_mib == 0 || mem_size_mib % multiple != 0 {
            return Err(
                "The memory size (MiB) is either 0, or not a multiple of the configured page size.",
            );
        }
        let cpu_template = match u.cpu_template {
            None => self.cpu_template,
            Some(CpuTemplate::None) => None,
            Some(t) => Some(t),
        };
        Ok(MachineConfig {
            vcpu_count,
            mem_size_mib,
            smt,
            cpu_template,
            track_dirty_pages: u.track_dirty_pages.unwrap_or(self.track_dirty_pages),
            huge_pages,
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Vsock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock_id: Option<String>,
    pub guest_cid: u32,
    pub uds_path: String,
}

/// A log level, accepted in any case, `Warning` too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "off" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Level::parse(&s).ok_or_else(|| serde::de::Error::custom("Invalid LevelFilter"))
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoggerConfig {
    pub log_path: Option<PathBuf>,
    pub level: Option<Level>,
    pub show_level: Option<bool>,
    pub show_log_origin: Option<bool>,
    pub module: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct MetricsConfig {
    pub metrics_path: PathBuf,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub serial_out_path: Option<PathBuf>,
    pub rate_limiter: Option<TokenBucket>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entropy {
    pub rate_limiter: Option<RateLimiter>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum ActionType {
    FlushMetrics,
    InstanceStart,
    SendCtrlAltDel,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub action_type: ActionType,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum SnapshotType {
    Diff,
    #[default]
    Full,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreate {
    #[serde(default)]
    pub snapshot_type: SnapshotType,
    pub snapshot_path: PathBuf,
    pub mem_file_path: PathBuf,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum MemBackendType {
    File,
    Uffd,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemBackend {
    pub backend_path: PathBuf,
    pub backend_type: MemBackendType,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct NetworkOverride {
    pub iface_id: String,
    pub host_dev_name: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct VsockOverride {
    pub uds_path: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLoad {
    pub snapshot_path: PathBuf,
    pub mem_file_path: Option<PathBuf>,
    pub mem_backend: Option<MemBackend>,
    #[serde(default)]
    pub enable_diff_snapshots: bool,
    #[serde(default)]
    pub track_dirty_pages: bool,
    #[serde(default)]
    pub resume_vm: bool,
    #[serde(default)]
    pub network_overrides: Vec<NetworkOverride>,
    pub vsock_override: Option<VsockOverride>,
    #[serde(default)]
    pub clock_realtime: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum VmStateRequest {
    Paused,
    Resumed,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VmPatch {
    pub state: VmStateRequest,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum MmdsVersion {
    #[default]
    V1,
    V2,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MmdsConfig {
    #[serde(default)]
    pub version: MmdsVersion,
    pub network_interfaces: Vec<String>,
    pub ipv4_address: Option<Ipv4Addr>,
    #[serde(default)]
    pub imds_compat: bool,
}

/// The whole configuration, as `GET /vm/config` shows it and `--config-file` gives it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct FullConfig {
    pub balloon: Option<serde_json::Value>,
    pub drives: Vec<Drive>,
    pub boot_source: BootSource,
    pub cpu_config: Option<serde_json::Value>,
    pub logger: Option<LoggerConfig>,
    pub machine_config: Option<MachineConfig>,
    pub metrics: Option<MetricsConfig>,
    pub mmds_config: Option<MmdsConfig>,
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
    pub vsock: Option<Vsock>,
    pub entropy: Option<Entropy>,
    #[serde(default)]
    pub pmem: Vec<serde_json::Value>,
    pub memory_hotplug: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: for<'a> Deserialize<'a> + fmt::Debug>(json: &str) -> String {
        serde_json::from_str::<T>(json).unwrap_err().to_string()
    }

    #[test]
    fn required_and_unknown_fields() {
        assert!(err::<BootSource>("{}").starts_with("missing field `kernel_image_path`"));
        assert!(err::<BootSource>(r#"{"kernel_image_path":"k","x":1}"#)
            .starts_with("unknown field `x`, expected one of `kernel_image_path`"));
        assert!(err::<Drive>(r#"{"drive_id":"a"}"#).starts_with("missing field `is_root_device`"));
        assert!(
            err::<MachineConfig>(r#"{"vcpu_count":1}"#).starts_with("missing field `mem_size_mib`")
        );
        // Firecracker accepts unknown fields in /metrics.
        assert!(serde_json::from_str::<MetricsConfig>(r#"{"metrics_path":"m","x":1}"#).is_ok());
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(
            Mac::parse("AA:bb:0c:00:01:ff").unwrap().to_string(),
            "aa:bb:0c:00:01:ff"
        );
        for bad in [
            "aa:bb",
            "aa:bb:cc:dd:ee:f",
            "aa:bb:cc:dd:ee:gg",
            "aa:bb:cc:dd:ee:ff:00",
        ] {
            assert!(Mac::parse(bad).is_none(), "{bad}");
        }
        assert!(
            err::<NetworkInterface>(r#"{"iface_id":"a","host_dev_name":"t","guest_mac":"x"}"#)
                .starts_with("The provided MAC address is invalid.")
        );
    }

    #[test]
    fn machine_config_checks() {
        let base = MachineConfig::default();
        let upd = |j: &str| serde_json::from_str::<MachineConfigUpdate>(j).unwrap();
        assert_eq!(
            base.updated(&upd(r#"{"vcpu_count":2}"#))
                .unwrap()
                .vcpu_count,
            2
        );
        assert!(base.updated(&upd(r#"{"vcpu_count":0}"#)).is_err());
        assert!(base.updated(&upd(r#"{"vcpu_count":33}"#)).is_err());
        assert!(base
            .updated(&upd(r#"{"vcpu_count":3,"smt":true}"#))
            .is_err());
        assert!(base.updated(&upd(r#"{"mem_size_mib":0}"#)).is_err());
        assert!(base
            .updated(&upd(r#"{"mem_size_mib":3,"huge_pages":"2M"}"#))
            .is_err());
        let t = base.updated(&upd(r#"{"cpu_template":"T2"}"#)).unwrap();
        assert_eq!(t.cpu_template, Some(CpuTemplate::T2));
        assert_eq!(
            t.updated(&upd(r#"{"cpu_template":"None"}"#))
                .unwrap()
                .cpu_template,
            None
        );
        let json = serde_json::to_string(&base).unwrap();
        assert_eq!(
            json,
            r#"{"vcpu_count":1,"mem_size_mib":128,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}"#
        );
    }

    #[test]
    fn levels() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("Debug"), Some(Level::Debug));
        assert!(err::<LoggerConfig>(r#"{"level":"loud"}"#).starts_with("Invalid LevelFilter"));
    }
}
