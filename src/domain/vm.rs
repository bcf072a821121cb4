//! A VM as jitgate sees it: its network (from ARM), and its posture, judged as Defender for
//! Cloud judges it: JIT enabled -> healthy; otherwise no NSG and no firewall -> not
//! applicable; otherwise a management port open from the Internet -> unhealthy, else healthy.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use utoipa::ToSchema;

/// The ports Defender for Cloud calls management ports.
pub const MANAGEMENT_PORTS: [u16; 4] = [22, 3389, 5985, 5986];

/// Where an NSG is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Attachment {
    NetworkInterface,
    Subnet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NsgAttachment {
    pub id: String,
    pub attached_to: Attachment,
}

/// A VM's network, as jitgate needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmNetwork {
    pub vm_id: String,
    pub name: String,
    pub location: String,
    pub private_ip_addresses: Vec<IpAddr>,
    pub public_ip_addresses: Vec<String>,
    /// Subnet NSGs first (inbound traffic meets them first), then NIC NSGs; no duplicates.
    pub network_security_groups: Vec<NsgAttachment>,
    /// Azure Firewalls that forward traffic to the VM.
    #[serde(default)]
    pub firewalls: Vec<String>,
}

impl VmNetwork {
    /// Something stands between the VM and the Internet that JIT can close.
    pub fn is_guarded(&self) -> bool {
        !self.network_security_groups.is_empty() || !self.firewalls.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Assessment {
    Healthy,
    Unhealthy,
    NotApplicable,
}

impl Assessment {
    pub fn parse(s: &str) -> Result<Assessment, String> {
        match s {
            "healthy" => Ok(Assessment::Healthy),
            "unhealthy" => Ok(Assessment::Unhealthy),
            "notApplicable" => Ok(Assessment::NotApplicable),
            other => Err(format!(
                "unknown assessment {other:?}: expected healthy, unhealthy or notApplicable"
            )),
        }
    }
}

/// The assessment and the reasons a person reads for it. `exposures` are the paths from the
/// Internet to management ports found in the VM's NSGs and firewalls.
pub fn assess(jit_enabled: bool, guarded: bool, exposures: &[String]) -> (Assessment, Vec<String>) {
    if jit_enabled {
        return (
            Assessment::Healthy,
            vec![
                "JIT VM access is enabled: management ports are closed until access is granted"
                    .into(),
            ],
        );
    }
    if !guarded {
        return (
            Assessment::NotApplicable,
            vec!["no network security group or firewall stands in front of the VM: JIT needs one to close ports".into()],
        );
    }
    if exposures.is_empty() {
        return (
            Assessment::Healthy,
            vec![
                "no NSG or firewall allows inbound 22, 3389, 5985 or 5986 from the Internet".into(),
            ],
        );
    }
    let mut reasons = exposures.to_vec();
    reasons.push("enable JIT VM access to close these ports until someone needs them".into());
    (Assessment::Unhealthy, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jit_enabled_is_healthy_whatever_else_holds() {
        assert_eq!(
            assess(true, true, &["NSG a allows 22".into()]).0,
            Assessment::Healthy
        );
        assert_eq!(assess(true, false, &[]).0, Assessment::Healthy);
    }

    #[test]
    fn unguarded_is_not_applicable_exposed_is_unhealthy_else_healthy() {
        assert_eq!(assess(false, false, &[]).0, Assessment::NotApplicable);
        let (a, reasons) = assess(
            false,
            true,
            &["NSG nsg-a allows 22 from Internet (rule allow-ssh, priority 300)".into()],
        );
        assert_eq!(a, Assessment::Unhealthy);
        assert!(reasons[0].contains("allow-ssh"));
        assert_eq!(assess(false, true, &[]).0, Assessment::Healthy);
    }

    #[test]
    fn assessment_names_parse_as_the_api_spells_them() {
        assert_eq!(
            Assessment::parse("notApplicable"),
            Ok(Assessment::NotApplicable)
        );
        assert!(Assessment::parse("NotApplicable").is_err());
    }
}
