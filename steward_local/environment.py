"""Settings for importing a function outside Lambda: every variable any function's settings read.

A function's cold start validates its own settings (``steward/settings.py``),
so the cold-start path test and the cold-start benchmark give each function
these placeholders: names only, nothing is called.
"""

FUNCTION_ENVIRONMENT = {
    "STEWARD_APPS_TABLE": "cold-apps",
    "STEWARD_DEVICES_TABLE": "cold-devices",
    "STEWARD_PROFILES_TABLE": "cold-profiles",
    "STEWARD_CATALOG_TABLE": "cold-catalog",
    "STEWARD_CONVERSATIONS_TABLE": "cold-conversations",
    "STEWARD_SHARD_COUNT": "16",
    "STEWARD_REPORTS_BUCKET": "cold-reports",
    "STEWARD_JOB_STATE_MACHINE": "arn:aws:states:us-east-1:123456789012:stateMachine:cold-jobs",
    "STEWARD_JOB_EVENT_BUS": "cold-jobs",
    "STEWARD_JOB_MAX_CONCURRENCY": "4",
    "STEWARD_INACTIVE_PROFILE_MONTHS": "4",
    "STEWARD_RETENTION_STATE_MACHINE": "arn:aws:states:us-east-1:123456789012:stateMachine:cold-retention",
    "STEWARD_RETENTION_MAX_CONCURRENCY": "4",
    "STEWARD_RETENTION_PAGES_PER_EXECUTION": "800",
    "STEWARD_RETENTION_PAGE_ENTRIES": "500",
    "STEWARD_RETENTION_FINALIZE_MARGIN_SECONDS": "60",
    "STEWARD_IMPORTS_BUCKET": "cold-imports",
    "STEWARD_AUDIENCE_DATA_BUCKET": "cold-audiences",
    "STEWARD_AUDIENCE_IMPORTER": "cold-importer",
    "STEWARD_AUDIENCE_TOPIC": "arn:aws:sns:us-east-1:123456789012:cold-failures",
    "STEWARD_AUDIENCE_EVENT_BUS": "cold-audiences",
    "STEWARD_AUDIENCE_IMPORT_STATE_MACHINE": "arn:aws:states:us-east-1:123456789012:stateMachine:cold-audiences",
    "STEWARD_AUDIENCE_FAN_OUT_BYTES": "268435456",
    "STEWARD_AUDIENCE_RANGE_BYTES": "67108864",
    "AWS_DEFAULT_REGION": "us-east-1",
}
