"""The on-prem finisher: queue worker, stages (restore, fetch, de-bag, sync), ledger and operator CLI."""
