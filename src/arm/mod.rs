//! Azure Resource Manager: the client jitgate uses to read VMs and their networks and to write
//! NSG and firewall rules, and [`sim`], a simulator of the same REST subset.

pub mod credential;
pub mod evaluate;
pub mod model;
