//! The TUN side of the device: creates the named interface, up, with the given MTU.

use gotatun::tun::tun;
use gotatun::tun::tun_async_device::TunDevice;

use crate::WgError;

/// The IP transport handed to gotatun.
pub(crate) type Tun = TunDevice;

/// Creates (and brings up) the TUN interface `ifname`. The interface lives as long as the
/// returned handle and its clones: closing the last fd deletes it.
pub(crate) fn create_tun(ifname: &str, mtu: u16) -> Result<Tun, WgError> {
    let mut config = tun::Configuration::default();
    config.tun_name(ifname).mtu(mtu).up();
    let dev = tun::create_as_async(&config).map_err(|e| WgError::Tun {
        ifname: ifname.to_owned(),
        reason: e.to_string(),
    })?;
    TunDevice::from_tun_device(dev).map_err(|e| WgError::Tun {
        ifname: ifname.to_owned(),
        reason: e.to_string(),
    })
}
