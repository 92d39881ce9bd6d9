//! The transactions a link sends its backend: the link's number for the request, then the
//! client's transaction, so that an asynchronous plugin `event` (routed by handle) carries the
//! client's transaction back without a lookup.

/// The transaction string sent to the backend: our number, then the client's transaction, so
/// an asynchronous plugin `event` (routed by handle, not by this table) still carries the
/// client's transaction back without a lookup.
pub fn backend_transaction(id: u64, client_transaction: Option<&str>) -> String {
    match client_transaction {
        Some(t) => format!("{id}/{t}"),
        None => id.to_string(),
    }
}

/// Splits a backend transaction into our number and the client's transaction.
pub fn split_transaction(transaction: &str) -> Option<(u64, Option<&str>)> {
    match transaction.split_once('/') {
        Some((id, client)) => Some((id.parse().ok()?, Some(client))),
        None => Some((transaction.parse().ok()?, None)),
    }
}
