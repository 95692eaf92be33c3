//! The engine against a real PostgreSQL: validate, apply, idempotency, dry
//! run, and what a failure leaves behind (nothing).

mod common;

use common::{example_migrations, TestDb};
use slipway::ApplyOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_database_validate_apply_apply_validate() {
    let db = TestDb::new("empty_cycle").await;
    let migrator = db.migrator(&example_migrations());

    let report = migrator.validate().await;
    assert!(report.success, "{}", report.to_json());
    assert!(!report.schema_valid);
    assert_eq!(report.pending.len(), 6, "{}", report.to_json());
    assert_eq!(report.current_version, None);
    assert_eq!(db.history_count().await, 0, "validate must not write");

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 6);
    assert_eq!(report.current_version.as_deref(), Some("0005"));
    assert!(report.schema_valid);
    assert!(db.has_table("quiz_analytics").await);
    let after_first = db.snapshot().await;

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert!(report.applied.is_empty(), "second apply must be a no-op");
    assert_eq!(db.snapshot().await, after_first);

    let report = migrator.validate().await;
    assert!(report.success && report.schema_valid, "{}", report.to_json());
    assert!(report.pending.is_empty());
}
