//! ARM resource names. ARM compares ids case-insensitively, so every id keeps the spelling it
//! arrived with (to return it as stored) and a lower-cased key (to compare and index by).

use std::fmt;

/// A virtual machine, named by its ARM id
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}`.
#[derive(Debug, Clone)]
pub struct VmId {
    raw: String,
    key: String,
    subscription: String,
    resource_group: String,
    name: String,
}

impl PartialEq for VmId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for VmId {}

impl VmId {
    /// Builds the id from URL path segments, checking each one.
    pub fn from_parts(
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<Self, String> {
        check_subscription(subscription)?;
        check_resource_group(resource_group)?;
        check_vm_name(name)?;
        let raw = format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachines/{name}"
        );
        Ok(Self {
            key: raw.to_ascii_lowercase(),
            raw,
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
            name: name.to_string(),
        })
    }

    /// Parses a full ARM id; the fixed words may come in any case, as ARM allows.
    pub fn parse(id: &str) -> Result<Self, String> {
        let segments: Vec<&str> = id.split('/').collect();
        let shape_ok = segments.len() == 9
            && segments[0].is_empty()
            && segments[1].eq_ignore_ascii_case("subscriptions")
            && segments[3].eq_ignore_ascii_case("resourceGroups")
            && segments[5].eq_ignore_ascii_case("providers")
            && segments[6].eq_ignore_ascii_case("Microsoft.Compute")
            && segments[7].eq_ignore_ascii_case("virtualMachines");
        if !shape_ok {
            return Err("expected /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}".into());
        }
        check_subscription(segments[2])?;
        check_resource_group(segments[4])?;
        check_vm_name(segments[8])?;
        Ok(Self {
            raw: id.to_string(),
            key: id.to_ascii_lowercase(),
            subscription: segments[2].to_string(),
            resource_group: segments[4].to_string(),
            name: segments[8].to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// The lower-cased id: the identity used for comparison and storage keys.
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn subscription(&self) -> &str {
        &self.subscription
    }
    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Subscription ids are GUIDs in Azure; we accept any short token of GUID characters so that
/// simulators and tests may use readable names, and nothing that could break a path or query.
fn check_subscription(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!(
            "invalid subscription id {s:?}: expected 1 to 64 letters, digits or '-'"
        ));
    }
    Ok(())
}

/// ARM's rule for resource group names: up to 90 of letters, digits, `_ - . ( )`, no trailing dot.
fn check_resource_group(s: &str) -> Result<(), String> {
    let chars_ok = s
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
    if s.is_empty() || s.chars().count() > 90 || !chars_ok || s.ends_with('.') {
        return Err(format!(
            "invalid resource group name {s:?}: expected 1 to 90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'"
        ));
    }
    Ok(())
}

/// ARM's rule for VM names: up to 64 of letters, digits, `_ - .`, no leading `_`, no trailing `.` or `-`.
fn check_vm_name(s: &str) -> Result<(), String> {
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if s.is_empty() || s.len() > 64 || !chars_ok || s.starts_with('_') || s.ends_with(['.', '-']) {
        return Err(format!(
            "invalid virtual machine name {s:?}: expected 1 to 64 letters, digits, '_', '-' or '.', not ending in '.' or '-'"
        ));
    }
    Ok(())
}

/// Where a role holds: the whole tenant, a subscription, a resource group or one VM.
/// A role at a scope holds for everything under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Tenant,
    Subscription {
        subscription: String,
    },
    ResourceGroup {
        subscription: String,
        resource_group: String,
    },
    Vm(VmId),
}

impl Scope {
    /// Parses `/`, `/subscriptions/{s}`, `/subscriptions/{s}/resourceGroups/{rg}` or a VM id.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "/" {
            return Ok(Scope::Tenant);
        }
        let segments: Vec<&str> = s.split('/').collect();
        let expected = "expected /, /subscriptions/{sub}, /subscriptions/{sub}/resourceGroups/{rg} or a virtual machine id";
        if segments.first() != Some(&"")
            || !segments
                .get(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("subscriptions"))
        {
            return Err(expected.into());
        }
        match segments.len() {
            3 => {
                check_subscription(segments[2])?;
                Ok(Scope::Subscription {
                    subscription: segments[2].to_string(),
                })
            }
            5 if segments[3].eq_ignore_ascii_case("resourceGroups") => {
                check_subscription(segments[2])?;
                check_resource_group(segments[4])?;
                Ok(Scope::ResourceGroup {
                    subscription: segments[2].to_string(),
                    resource_group: segments[4].to_string(),
                })
            }
            9 => VmId::parse(s).map(Scope::Vm),
            _ => Err(expected.into()),
        }
    }

    /// Whether this scope covers all of `other` (a scope covers itself). Compared on whole,
    /// case-folded path segments.
    pub fn contains(&self, other: &Scope) -> bool {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match (self, other) {
            (Scope::Tenant, _) => true,
            (_, Scope::Tenant) => false,
            (_, Scope::Vm(vm)) => self.covers(vm),
            (Scope::Subscription { subscription: s }, Scope::Subscription { subscription: o })
            | (
                Scope::Subscription { subscription: s },
                Scope::ResourceGroup {
                    subscription: o, ..
                },
            ) => same(s, o),
            (
                Scope::ResourceGroup {
                    subscription: s,
                    resource_group: r,
                },
                Scope::ResourceGroup {
                    subscription: os,
                    resource_group: or,
                },
            ) => same(s, os) && same(r, or),
            _ => false,
        }
    }

    /// The lower-cased ARM path of the scope: what the store indexes and compares.
    pub fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }

    /// Whether this scope covers `vm`. Compared on whole, case-folded path segments, so
    /// `/subscriptions/abc` never covers a VM in `/subscriptions/abcd`.
    pub fn covers(&self, vm: &VmId) -> bool {
        match self {
            Scope::Tenant => true,
            Scope::Subscription { subscription } => {
                vm.subscription().eq_ignore_ascii_case(subscription)
            }
            Scope::ResourceGroup {
                subscription,
                resource_group,
            } => {
                vm.subscription().eq_ignore_ascii_case(subscription)
                    && vm.resource_group().eq_ignore_ascii_case(resource_group)
            }
            Scope::Vm(id) => id == vm,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Tenant => f.write_str("/"),
            Scope::Subscription { subscription } => write!(f, "/subscriptions/{subscription}"),
            Scope::ResourceGroup {
                subscription,
                resource_group,
            } => write!(
                f,
                "/subscriptions/{subscription}/resourceGroups/{resource_group}"
            ),
            Scope::Vm(id) => f.write_str(id.as_str()),
        }
    }
}

/// On the wire and in stored JSON a VM is its ARM id as written.
impl serde::Serialize for VmId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for VmId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        VmId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-Prod/providers/Microsoft.Compute/virtualMachines/vm1";

    #[test]
    fn vm_ids_compare_case_insensitively_and_keep_their_spelling() {
        let a = VmId::parse(VM).unwrap();
        let b = VmId::parse(&VM.to_uppercase().replace("PROVIDERS", "providers")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), VM);
        assert_eq!(a.resource_group(), "rg-Prod");
    }

    #[test]
    fn from_parts_builds_the_canonical_arm_id() {
        let id = VmId::from_parts("s1", "rg", "vm1").unwrap();
        assert_eq!(
            id.as_str(),
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
        );
    }

    #[test]
    fn malformed_ids_and_segments_are_refused() {
        for bad in [
            "",
            "/subscriptions/s1/resourceGroups/rg",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualMachines/vm",
            "/subscriptions/s 1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "/subscriptions/s1/resourceGroups/rg./providers/Microsoft.Compute/virtualMachines/vm",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/extra",
        ] {
            assert!(VmId::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(VmId::from_parts("s1", "rg", "a/b").is_err());
        assert!(VmId::from_parts("s1", "rg", &"x".repeat(65)).is_err());
    }

    #[test]
    fn scopes_cover_only_whole_segments() {
        let vm = VmId::parse(VM).unwrap();
        let sub = Scope::parse("/subscriptions/00000000-0000-0000-0000-000000000001").unwrap();
        let prefix = Scope::parse("/subscriptions/00000000-0000-0000-0000-00000000000").unwrap();
        let rg = Scope::parse(
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/RG-PROD",
        )
        .unwrap();
        let other_rg = Scope::parse(
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-Pro",
        )
        .unwrap();
        assert!(Scope::Tenant.covers(&vm));
        assert!(sub.covers(&vm));
        assert!(!prefix.covers(&vm));
        assert!(rg.covers(&vm));
        assert!(!other_rg.covers(&vm));
        assert!(Scope::parse(VM).unwrap().covers(&vm));
        assert!(Scope::parse("/subscriptions").is_err());
        assert!(sub.contains(&rg) && !rg.contains(&sub) && sub.contains(&sub));
        assert!(
            !prefix.contains(&rg),
            "a prefix of a subscription id is another subscription"
        );
        assert!(Scope::Tenant.contains(&sub) && !sub.contains(&Scope::Tenant));
        assert!(rg.contains(&Scope::Vm(vm.clone())) && !other_rg.contains(&Scope::Vm(vm)));
        assert!(Scope::parse("/tenants/x").is_err());
    }
}
