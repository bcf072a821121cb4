//! Azure Resource Manager: the client jitgate uses to read VMs and their networks and to write
//! NSG and firewall rules, and [`sim`], a simulator of the same REST subset.

pub mod client;
pub mod credential;
pub mod discovery;
pub mod evaluate;
pub mod firewall_writer;
pub mod model;
pub mod nsg_writer;
pub mod sim;
pub mod writer;
