//! TEST STAND-IN, not Firecracker: the configuration calls of the state machine (boot source,
//! drives, network interfaces, vsock, MMDS, device updates and hotplug).

use std::fs::File;

use serde_json::Value;

use super::{err, Data, Vmm};
use crate::firecracker::devices;
use crate::firecracker::model::*;
use crate::firecracker::router::DeviceKind;

impl Vmm {
    pub(super) fn hotplug(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Data, (u16, String)>,
    ) -> Result<Data, (u16, String)> {
        if self.pci {
            f(self)
        } else {
            err("PCI is not enabled")
        }
    }

    pub(super) fn set_boot_source(&mut self, b: BootSource) -> Result<Data, (u16, String)> {
        self.boot_path = true;
        let kernel = File::open(&b.kernel_image_path).map_err(|e| {
            (
                400,
                format!("Boot source error: The kernel file cannot be opened: {e}"),
            )
        })?;
        if let Some(initrd) = &b.initrd_path {
            File::open(initrd).map_err(|e| {
                (
                    400,
                    format!(
                        "Boot source error: The initrd file cannot be opened due to invalid path \
                         or invalid permissions. {e}"
                    ),
                )
            })?;
        }
        self.boot = Some((b, kernel));
        Ok(Data::Empty)
    }

    pub(super) fn insert_drive(&mut self, mut d: Drive) -> Result<Data, (u16, String)> {
        let pos = self.drives.iter().position(|x| x.drive_id == d.drive_id);
        if d.is_root_device
            && self.drives.first().is_some_and(|r| r.is_root_device)
            && pos != Some(0)
        {
            return err("Drive config error: A root block device already exists!");
        }
        match (&d.path_on_host, &d.socket) {
            (Some(p), None) => {
                devices::open_backing_file(p, d.is_read_only.unwrap_or(false))
                    .map_err(|m| (400, format!("Drive config error: {m}")))?;
                d.is_read_only = Some(d.is_read_only.unwrap_or(false));
                d.io_engine = Some(d.io_engine.unwrap_or_default());
            }
            (None, Some(_)) => {}
            _ => {
                return err(
                    "Drive config error: Unable to create the virtio block device: Invalid block config.",
                )
            }
        }
        match pos {
            Some(i) => self.drives[i] = d,
            None if d.is_root_device => self.drives.insert(0, d),
            None => self.drives.push(d),
        }
        if let Some(i) = self.drives.iter().position(|x| x.is_root_device) {
            let root = self.drives.remove(i);
            self.drives.insert(0, root);
        }
        Ok(Data::Empty)
    }

    pub(super) fn insert_net(&mut self, n: NetworkInterface) -> Result<Data, (u16, String)> {
        if let Some(mac) = n.guest_mac {
            if self
                .nets
                .iter()
                .any(|(x, _)| x.guest_mac == Some(mac) && x.iface_id != n.iface_id)
            {
                return err(format!(
                    "Network config error: The MAC address is already in use: {mac}"
                ));
            }
        }
        // An update releases the old tap first, as Firecracker drops the old device.
        self.nets.retain(|(x, _)| x.iface_id != n.iface_id);
        let tap = devices::open_tap(&n.host_dev_name)
            .map_err(|m| (400, format!("Network config error: {m}")))?;
        self.nets.push((n, tap));
        Ok(Data::Empty)
    }

    pub(super) fn set_vsock(&mut self, v: Vsock) -> Result<Data, (u16, String)> {
        if let Some(old) = self.vsock.take() {
            let _ = std::fs::remove_file(&old.uds_path);
        }
        devices::bind_vsock(&v.uds_path).map_err(|m| (400, format!("Vsock config error: {m}")))?;
        self.vsock = Some(v);
        Ok(Data::Empty)
    }

    pub(super) fn set_mmds_config(&mut self, c: MmdsConfig) -> Result<Data, (u16, String)> {
        let prefix = "MMMDS config error";
        if let Some(ip) = c.ipv4_address {
            let o = ip.octets();
            if o[0] != 169 || o[1] != 254 {
                return err(format!(
                    "{prefix}: The MMDS IPv4 address is not link local."
                ));
            }
        }
        if c.network_interfaces.is_empty() {
            return err(format!(
                "{prefix}: The list of network interface IDs that allow forwarding MMDS requests is empty."
            ));
        }
        if !c
            .network_interfaces
            .iter()
            .all(|i| self.nets.iter().any(|(n, _)| &n.iface_id == i))
        {
            return err(format!(
                "{prefix}: The list of network interface IDs provided contains at least one ID \
                 that does not correspond to any existing network interface."
            ));
        }
        self.mmds_config = Some(c);
        Ok(Data::Empty)
    }

    pub(super) fn set_mmds(&mut self, v: Value) -> Result<Data, (u16, String)> {
        let size = v.to_string().len();
        if size > self.mmds_limit {
            return Err((
                413,
                format!(
                    "MMDS limit exceeded error: The MMDS patch request doesn't fit. The MMDS data \
                     store size limit is {} bytes.",
                    self.mmds_limit
                ),
            ));
        }
        self.mmds = v;
        Ok(Data::Empty)
    }

    pub(super) fn patch_drive(&mut self, u: DriveUpdate) -> Result<Data, (u16, String)> {
        let prefix = "Drive config error: Unable to patch the block device";
        let Some(d) = self.drives.iter_mut().find(|d| d.drive_id == u.drive_id) else {
            return err(format!(
                "{prefix}: Device not found. Please verify the request arguments."
            ));
        };
        if let Some(p) = &u.path_on_host {
            devices::open_backing_file(p, d.is_read_only.unwrap_or(false)).map_err(|m| {
                (
                    400,
                    format!("{prefix}: {m} Please verify the request arguments."),
                )
            })?;
            d.path_on_host = Some(p.clone());
        }
        if u.rate_limiter.is_some() {
            d.rate_limiter = u.rate_limiter;
        }
        Ok(Data::Empty)
    }

    pub(super) fn patch_net(&mut self, u: NetworkInterfaceUpdate) -> Result<Data, (u16, String)> {
        let Some((n, _)) = self.nets.iter_mut().find(|(n, _)| n.iface_id == u.iface_id) else {
            return err("Network config error: Unable to update the net device: Device not found.");
        };
        if u.rx_rate_limiter.is_some() {
            n.rx_rate_limiter = u.rx_rate_limiter;
        }
        if u.tx_rate_limiter.is_some() {
            n.tx_rate_limiter = u.tx_rate_limiter;
        }
        Ok(Data::Empty)
    }

    pub(super) fn unplug(&mut self, kind: DeviceKind, id: &str) -> Result<Data, (u16, String)> {
        let found = match kind {
            DeviceKind::Block => {
                if self
                    .drives
                    .iter()
                    .any(|d| d.drive_id == id && d.is_root_device)
                {
                    return err("Cannot unplug root device");
                }
                let before = self.drives.len();
                self.drives.retain(|d| d.drive_id != id);
                before != self.drives.len()
            }
            DeviceKind::Net => {
                let before = self.nets.len();
                self.nets.retain(|(n, _)| n.iface_id != id);
                before != self.nets.len()
            }
            DeviceKind::Pmem => false,
        };
        if found {
            Ok(Data::Empty)
        } else {
            err("Device not found")
        }
    }
}
