//! Leases: a document per singleton job saying which replica may run it, and until when.
//!
//! A replica takes a lease that is free, expired or already its own, in one conditional
//! upsert: MongoDB's unique `_id` makes two takers race safely (the loser's upsert hits a
//! duplicate key). The holder renews it while it works and releases it when done; a holder
//! that dies simply lets it expire.

use std::time::Duration;

use bson::{doc, Document};
use chrono::{DateTime, Utc};

use super::{Database, StoreError};

/// Field names of a lease document.
pub mod lease_fields {
    pub const HOLDER: &str = "holder";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const RENEWED_AT: &str = "renewed_at";
}

/// Who holds a lease that could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

impl Database {
    /// Takes or renews lease `name` for `holder` until `now + ttl`. `Ok(None)` when taken;
    /// `Ok(Some(holder))` when another replica holds it unexpired.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<LeaseHolder>, StoreError> {
        let now_bson = bson::DateTime::from_chrono(now);
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let expires_at = bson::DateTime::from_chrono(now.checked_add_signed(ttl).unwrap_or(now));
        let filter = doc! {
            "_id": name,
            "$or": [
                { lease_fields::HOLDER: holder },
                { lease_fields::EXPIRES_AT: { "$lte": now_bson } },
            ],
        };
        let update = doc! { "$set": {
            lease_fields::HOLDER: holder,
            lease_fields::EXPIRES_AT: expires_at,
            lease_fields::RENEWED_AT: now_bson,
        }};
        match self.leases.update_one(filter, update).upsert(true).await {
            Ok(_) => Ok(None),
            Err(error) if super::is_duplicate_key(&error) => {
                let current = self
                    .leases
                    .find_one(doc! { "_id": name })
                    .await
                    .map_err(StoreError::Unavailable)?;
                Ok(Some(lease_holder(current.as_ref())))
            }
            Err(error) => Err(StoreError::Unavailable(error)),
        }
    }

    /// Gives lease `name` up if `holder` still has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.leases
            .delete_one(doc! { "_id": name, lease_fields::HOLDER: holder })
            .await
            .map(|_| ())
            .map_err(StoreError::Unavailable)
    }
}

fn lease_holder(document: Option<&Document>) -> LeaseHolder {
    LeaseHolder {
        holder: document
            .and_then(|lease| lease.get_str(lease_fields::HOLDER).ok())
            .unwrap_or("unknown")
            .to_owned(),
        expires_at: document
            .and_then(|lease| lease.get_datetime(lease_fields::EXPIRES_AT).ok())
            .map(|time| time.to_chrono())
            .unwrap_or_default(),
    }
}
