"""notify_restore: S3 "Object Restore Completed" events → RestoredWork messages on the regional queues."""
