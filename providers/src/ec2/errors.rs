//! AWS errors to provider errors.

use crate::ProviderError;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// Codes AWS documents as "try again": throttling and server-side trouble.
const TRANSIENT_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Codes meaning "no room": capacity in the zone or an account quota.
const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientVolumeCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientAddressCapacity",
    "InsufficientCapacity",
    "InsufficientFreeAddressesInSubnet",
];

/// Codes meaning "the resource is in the wrong state for this".
const CONFLICT_CODES: &[&str] =
    &["IncorrectState", "IncorrectInstanceState", "VolumeInUse", "InvalidVolume.ZoneMismatch", "OperationNotPermitted"];

/// Maps an error code (and HTTP status, when known) to the provider error kind.
pub(crate) fn classify(code: &str, status: Option<u16>, message: String) -> ProviderError {
    if TRANSIENT_CODES.contains(&code) {
        return ProviderError::Transient(message);
    }
    // RequestLimitExceeded (throttling) was handled above.
    if CAPACITY_CODES.contains(&code) || code.ends_with("LimitExceeded") {
        return ProviderError::Capacity(message);
    }
    if code.ends_with(".NotFound") || code.ends_with("NotFound") {
        return ProviderError::NotFound(message);
    }
    if CONFLICT_CODES.contains(&code) {
        return ProviderError::Conflict(message);
    }
    match status {
        Some(s) if s >= 500 || s == 429 => ProviderError::Transient(message),
        _ => ProviderError::Permanent(message),
    }
}

/// `op` names the API call for the message ("RunInstances").
pub(crate) fn map_sdk_error<E>(op: &str, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("Unknown").to_owned();
            let message = format!("EC2 {op}: {code}: {}", err.message().unwrap_or("no message"));
            let status = err.raw_response().map(|r| r.status().as_u16());
            classify(&code, status, message)
        }
        // Network failures, timeouts, unreadable responses: the request may not have
        // been processed; idempotent retries make that safe.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ProviderError::Transient(format!("EC2 {op}: {}", aws_sdk_ec2::error::DisplayErrorContext(&err)))
        }
        _ => ProviderError::Permanent(format!("EC2 {op}: {}", aws_sdk_ec2::error::DisplayErrorContext(&err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: &str, status: Option<u16>) -> &'static str {
        classify(code, status, String::new()).code().as_str()
    }

    #[test]
    fn maps_codes() {
        assert_eq!(kind("RequestLimitExceeded", Some(503)), "provider_transient");
        assert_eq!(kind("Throttling", Some(400)), "provider_transient");
        assert_eq!(kind("InsufficientInstanceCapacity", Some(500)), "provider_capacity");
        assert_eq!(kind("InstanceLimitExceeded", Some(400)), "provider_capacity");
        assert_eq!(kind("VcpuLimitExceeded", Some(400)), "provider_capacity");
        assert_eq!(kind("InvalidInstanceID.NotFound", Some(400)), "provider_not_found");
        assert_eq!(kind("InvalidVolume.NotFound", Some(400)), "provider_not_found");
        assert_eq!(kind("IncorrectInstanceState", Some(400)), "provider_conflict");
        assert_eq!(kind("VolumeInUse", Some(400)), "provider_conflict");
        assert_eq!(kind("SomethingOdd", Some(502)), "provider_transient");
        assert_eq!(kind("InvalidParameterValue", Some(400)), "provider_error");
        assert_eq!(kind("IdempotentParameterMismatch", Some(400)), "provider_error");
    }
}
