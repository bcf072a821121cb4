//! The pure core: names, network values, durations and policies, parsed once at the edge so
//! that nothing further in can hold an invalid value. No I/O lives here.

pub mod duration;
pub mod errors;
pub mod grant;
pub mod ids;
pub mod network;
pub mod policy;
pub mod principal;
pub mod request;
pub mod vm;

pub use duration::{AccessDuration, DurationLimits};
pub use errors::{FieldError, FieldErrors};
pub use ids::{Scope, VmId};
pub use network::{Port, Protocol, SourcePrefix};
pub use policy::{ApprovalMode, Policy, PolicyDraft, PortRule};
pub use principal::Principal;
pub use vm::{Assessment, Attachment, NsgAttachment, VmNetwork};
