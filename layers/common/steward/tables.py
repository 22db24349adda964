"""pynamodb models: the only place that knows how items are laid out in DynamoDB.

Table names come from the stack at cold start through ``bind_tables``; the
placeholders below are never used against a real table.
"""

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from steward.settings import ConversationStoreSettings, StoreSettings
from steward.sharding import SEPARATOR

UNBOUND = "unbound-table"
# Fail fast inside Lambda's time limit (pynamodb's defaults wait 15 s to connect, 30 s to read).
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5
MAX_RETRY_ATTEMPTS = 3


class _Connection:
    table_name = UNBOUND
    connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds = READ_TIMEOUT_SECONDS
    max_retry_attempts = MAX_RETRY_ATTEMPTS


class AppRecord(Model):
    """One app (tenant). pk ``APP#<app_id>``, sk ``PROFILE``."""

    class Meta(_Connection):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    app_id = UnicodeAttribute()
    name = UnicodeAttribute()
    admin_password_hash = UnicodeAttribute()
    totp_secret = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    # Re-authentication (steward/apps/reauth.py), kept here so that one read
    # gives a check the secrets and its lock-out state: the attempts counted
    # in the current window (failed or still being checked), the window's
    # start in epoch seconds, and the last TOTP time step accepted.
    reauth_attempts = NumberAttribute(null=True)
    reauth_window_start = NumberAttribute(null=True)
    totp_last_step = NumberAttribute(null=True)
    # Audience imports: the most audiences the app may hold (null: the default).
    max_audiences = NumberAttribute(null=True)


class ApiKeyRecord(Model):
    """One API key of an app. pk ``APP#<app_id>``, sk ``KEY#<key_id>``; only a hash of the secret."""

    class Meta(_Connection):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    app_id = UnicodeAttribute()
    key_id = UnicodeAttribute()
    name = UnicodeAttribute()
    scopes = ListAttribute(of=UnicodeAttribute)
    secret_hash = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    revoked_at = UTCDateTimeAttribute(null=True)


class DevicesByUser(GlobalSecondaryIndex["DeviceRecord"]):
    """Sparse, keys-only index: a device dissociated from its user has no user_key and drops out."""

    class Meta:
        index_name = "by_user"
        projection = KeysOnlyProjection()

    user_key = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class DeviceRecord(Model):
    """One push device. pk ``<app_id>#<shard>``, sk the device id."""

    class Meta(_Connection):
        max_pool_connections = 16  # a batch of push results writes from 16 threads

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    user_key = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    transport = UnicodeAttribute()
    last_status = UnicodeAttribute(default="")
    has_succeeded = BooleanAttribute(default=False)
    failure_streak = NumberAttribute(default=0)
    active = BooleanAttribute(default=True)
    deactivated_at = UTCDateTimeAttribute(null=True)
    deactivation_reason = UnicodeAttribute(null=True)
    last_error_code = UnicodeAttribute(null=True)
    last_error_message = UnicodeAttribute(null=True)
    attributes = MapAttribute[str, str](default=dict)
    tags = UnicodeSetAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    last_push_at = UTCDateTimeAttribute(null=True)
    last_push_id = UnicodeAttribute(null=True)
    # The reactivate_devices job that last reactivated the device: lets the job recognise
    # its own work (a retried page, an owner's other devices). Not part of the domain Device.
    reactivated_by = UnicodeAttribute(null=True)
    # Optimistic lock for identify's read-modify-write; every write bumps it.
    # (Not pynamodb's VersionAttribute: its update() would reset the counter
    # on instances built from keys alone.)
    version = NumberAttribute(default=0)

    by_user = DevicesByUser()


class ProfileRecord(Model):
    """One user (profile) with its contacts, subscriptions and promo codes.

    pk ``<app_id>#<shard>``, sk the user id. One item per user keeps reads at
    one unit and lets criteria filter users in DynamoDB.
    """

    class Meta(_Connection):
        max_pool_connections = 16  # batch upserts write from 16 threads

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    # Custom fields by name; dates are stored as ISO-8601 UTC strings.
    fields = MapAttribute[str, object](default=dict)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    last_activity_at = UTCDateTimeAttribute(null=True)
    active = BooleanAttribute(default=True)
    deactivated_at = UTCDateTimeAttribute(null=True)
    deactivation_reason = UnicodeAttribute(null=True)
    global_unsubscribed = BooleanAttribute(default=False)
    # {address: {"active": bool, "added_at": iso}}
    emails = MapAttribute[str, object](default=dict)
    phones = MapAttribute[str, object](default=dict)
    # {"<resource_id>|<channel>": status}
    subscriptions = MapAttribute[str, object](default=dict)
    # {code: loyalty program id}
    promo_codes = MapAttribute[str, object](default=dict)
    # Ids of the static segments the user is a member of: lets a change of the
    # user's active flag or its deletion adjust those segments' counts.
    segments = UnicodeSetAttribute(null=True)
    # Set by the write that decides a conditional deletion (a delete_profiles job's), with the job's id: that
    # job's later attempts (a retried page) finish it; to anyone else the mark decides nothing.
    deletion_started_at = UTCDateTimeAttribute(null=True)
    deletion_started_by = UnicodeAttribute(null=True)
    version = NumberAttribute(default=0)


class _KeyedRecord(Model):
    """pk, sk and the two timestamps every catalog and conversations table item has."""

    class Meta(_Connection):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()


class CatalogRecord(_KeyedRecord):
    """Base of every item in the catalog table; see template.yaml for the key layout."""

    class Meta(_Connection):
        pass


class ResourceRecord(CatalogRecord):
    """A mailing resource or sender brand. pk ``<app_id>#resource``, sk the resource id."""

    class Meta(_Connection):
        pass

    name = UnicodeAttribute()
    channels = ListAttribute(of=UnicodeAttribute)


class RegionRecord(CatalogRecord):
    """A region. pk ``<app_id>#region#<shard>``, sk the region id."""

    class Meta(_Connection):
        pass

    region_type = UnicodeAttribute()
    name = UnicodeAttribute()
    tags = ListAttribute(of=UnicodeAttribute, default=list)
    country = UnicodeAttribute()
    lat = NumberAttribute()
    lng = NumberAttribute()
    # {"kind": "polygon", "points": [[lat, lng], ...]} or {"kind": "circle", "radius_m": n}; null unless a geozone
    geometry = MapAttribute[str, object](null=True)


class LoyaltyProgramRecord(CatalogRecord):
    """A loyalty program. pk ``<app_id>#loyalty``, sk the program id ``lp_<hex>``."""

    class Meta(_Connection):
        pass

    name = UnicodeAttribute()


class PromoCodeRecord(CatalogRecord):
    """A promo code of a loyalty program. pk ``<app_id>#promo#<shard>``, sk the code (unique per app)."""

    class Meta(_Connection):
        max_pool_connections = 16  # adding codes writes from 16 threads

    program_id = UnicodeAttribute()
    attached_user_id = UnicodeAttribute(null=True)
    attached_at = UTCDateTimeAttribute(null=True)


class SegmentRecord(CatalogRecord):
    """A segment and its member counts. pk ``<app_id>#segment``, sk the segment id ``seg_<hex>``."""

    class Meta(_Connection):
        pass

    name = UnicodeAttribute()
    kind = UnicodeAttribute()
    # The stored criteria as JSON text (criteria segments only).
    criteria = UnicodeAttribute(null=True)
    # Static segments only: counted in the same transactions that add and remove members.
    member_count = NumberAttribute(default=0)
    inactive_member_count = NumberAttribute(default=0)
    # Set while DELETE drains the members; no members can be added then.
    deleting = BooleanAttribute(default=False)


class SegmentNameRecord(CatalogRecord):
    """Claims a segment name in its app. pk ``<app_id>#segment-name``, sk the name."""

    class Meta(_Connection):
        pass

    segment_id = UnicodeAttribute()


class SegmentMemberRecord(CatalogRecord):
    """A user in a static segment. pk ``<app_id>#segment#<segment_id>#<shard>``, sk the user id."""

    class Meta(_Connection):
        pass


class ReceiptRecord(CatalogRecord):
    """Marks one bulk change as counted, so a retried step never adds its counts twice.

    pk ``<app_id>#receipt#<scope>`` (the job that counts), sk the change's key.
    The counts themselves live on the counted items (a segment's member
    counts); the receipt is written in the same transaction as their update.
    """

    class Meta(_Connection):
        pass


class TagRecord(CatalogRecord):
    """A device tag and its device count. pk ``<app_id>#tags``, sk the tag."""

    class Meta(_Connection):
        pass

    # Counted in the same transactions that tag and untag devices.
    device_count = NumberAttribute(default=0)


class TagMemberRecord(CatalogRecord):
    """A device carrying a tag. pk ``<app_id>#tag#<tag>#<shard>``, sk the device id."""

    class Meta(_Connection):
        pass


class AuditEntryRecord(CatalogRecord):
    """One entry of an app's audit log: written once, never updated nor deleted.

    pk ``<app_id>#audit``, sk the entry id (its zero-padded sequence number).
    ``params`` and ``counts`` hold canonical JSON text, so they read back
    exactly as they were hashed.
    """

    class Meta(_Connection):
        pass

    at = UnicodeAttribute()
    key_id = UnicodeAttribute()
    job_id = UnicodeAttribute()
    job_type = UnicodeAttribute(attr_name="type")
    params = UnicodeAttribute()
    reauth = UnicodeAttribute()
    status = UnicodeAttribute()
    counts = UnicodeAttribute()
    report_sha256 = UnicodeAttribute(null=True)
    prev_hash = UnicodeAttribute(null=True)
    entry_hash = UnicodeAttribute(attr_name="hash")


class AuditHeadRecord(CatalogRecord):
    """The last entry of an app's audit log. pk ``<app_id>#audit-head``, sk ``head``.

    Every append moves it in the same transaction as the entry's put, on the
    condition that it still names the entry read before: two appends never
    chain onto the same entry.
    """

    class Meta(_Connection):
        pass

    sequence = NumberAttribute()
    entry_hash = UnicodeAttribute(attr_name="hash")


class AuditJobRecord(CatalogRecord):
    """Claims a job's one entry in its app's log. pk ``<app_id>#audit-job``, sk the job id."""

    class Meta(_Connection):
        pass

    entry_id = UnicodeAttribute()


class JobItemRecord(CatalogRecord):
    """A maintenance job. pk ``<app_id>#job``, sk the job id, which starts with its creation time:
    a reverse query lists the newest first.

    ``params``, ``counts``, ``estimate``, ``error``, ``state`` and ``items``
    hold JSON text; the job types' state stays opaque to the store.
    """

    class Meta(_Connection):
        pass

    job_type = UnicodeAttribute(attr_name="type")
    status = UnicodeAttribute()
    dry_run = BooleanAttribute()
    params = UnicodeAttribute()
    key_id = UnicodeAttribute()
    reauth = UnicodeAttribute()
    started_at = UTCDateTimeAttribute(null=True)
    finished_at = UTCDateTimeAttribute(null=True)
    counts = UnicodeAttribute(null=True)
    estimate = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    confirms = UnicodeAttribute(null=True)
    # A dry run is confirmed once: the real run's id, written on the condition that it is empty.
    confirmed_by = UnicodeAttribute(null=True)
    report_key = UnicodeAttribute(null=True)
    report_sha256 = UnicodeAttribute(null=True)
    execution_arn = UnicodeAttribute(null=True)
    phase = NumberAttribute(default=0)
    phases = NumberAttribute(default=1)
    state = UnicodeAttribute(null=True)
    items = UnicodeAttribute(null=True)
    # DELETE of an unfinished job: hidden from every route at once; the worker stops and cleans up.
    deleted = BooleanAttribute(default=False)
    # The `Job Finished` event went out: a retried finalize publishes only while this is unset.
    event_published = BooleanAttribute(null=True)


class JobPartRecord(CatalogRecord):
    """One work item of a job's phase: its position and what its committed pages counted.

    pk ``<app_id>#job-part#<job_id>``, sk ``<phase>#<index>``. Only the item's
    worker writes it, each page's commit conditioned on the page number, so a
    retried step never counts a page twice. ``pending`` holds the page whose
    rows are stored but not yet applied and committed.
    """

    class Meta(_Connection):
        pass

    seq = NumberAttribute(default=0)
    position = UnicodeAttribute(null=True)
    done = BooleanAttribute(default=False)
    counts = UnicodeAttribute(null=True)
    tally = UnicodeAttribute(null=True)
    cost = UnicodeAttribute(null=True)
    pending = UnicodeAttribute(null=True)
    worker_ms = NumberAttribute(default=0)
    invocations = NumberAttribute(default=0)


class JobLockRecord(CatalogRecord):
    """The app's running real job: at most one at a time. pk ``<app_id>#job-lock``, sk ``lock``."""

    class Meta(_Connection):
        pass

    job_id = UnicodeAttribute()


class ConversationsTableRecord(_KeyedRecord):
    """Base of every item in the conversations table: conversations, retention settings and sweep runs.

    A table of their own, created with its two indexes: adding both indexes to an existing
    table would take two UpdateTable calls, which one stack update cannot make.
    """

    class Meta(_Connection):
        pass


class ConversationsDue(GlobalSecondaryIndex["ConversationRecord"]):
    """The retention sweep's due-date index: per (app, settings group, status, shard), conversations by the
    time that ages them.

    pk ``<app_id>#conversation-due#<group>#<status>#<shard>``, sk ``<clock>#<conversation id>`` where the
    group is ``@<channel>`` for a channel with overrides (``_`` for the others, see ``due_group``) and the
    clock is ``last_activity_at`` (``status_changed_at`` in delete). A sweep asks each partition
    for the keys older than the group's own cutoff: when nothing is due, the answer is empty and costs
    one read unit however many conversations the partition holds. ``version`` is projected so that
    the sweep's writes are conditioned on the conversation being exactly as it read it.
    """

    class Meta:
        index_name = "conversations_due"
        projection = IncludeProjection(["channel", "user_id", "version"])

    due_pk = UnicodeAttribute(hash_key=True)
    due_sk = UnicodeAttribute(range_key=True)


class ConversationsByUser(GlobalSecondaryIndex["ConversationRecord"]):
    """Sparse: a user's conversations (pk ``<app_id>#<user_id>``), with the status a deletion check needs.

    The projected attributes change only with the status, never with activity.
    """

    class Meta:
        index_name = "conversations_by_user"
        projection = IncludeProjection(["status"])

    user_key = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class ConversationRecord(ConversationsTableRecord):
    """A conversation. pk ``<app_id>#conversation#<shard>``, sk the conversation id."""

    class Meta(_Connection):
        max_pool_connections = 16  # the sweep writes from 16 threads

    channel = UnicodeAttribute()
    status = UnicodeAttribute()
    user_id = UnicodeAttribute(null=True)
    user_key = UnicodeAttribute(null=True)
    subject = UnicodeAttribute(null=True)
    last_activity_at = UTCDateTimeAttribute()
    status_changed_at = UTCDateTimeAttribute()
    due_pk = UnicodeAttribute()
    due_sk = UnicodeAttribute()
    version = NumberAttribute(default=0)

    due = ConversationsDue()
    by_user = ConversationsByUser()


class RetentionSettingsRecord(ConversationsTableRecord):
    """An app's retention settings as stored (JSON text). pk ``<app_id>#retention``, sk ``settings``."""

    class Meta(_Connection):
        pass

    document = UnicodeAttribute()
    version = NumberAttribute(default=0)
    # The due index's groups: every channel ever overridden (each may still hold entries).
    groups = UnicodeSetAttribute(null=True)
    # Bumped when the set of overridden channels changes; ``homed`` is the layout a complete sweep
    # has re-homed every entry to (entries written under the old set sit in the old groups until then).
    layout = NumberAttribute(default=0)
    homed = NumberAttribute(default=0)
    # When ``layout`` was last bumped: writes that chose a group under the older set may land until 30 s later.
    layout_changed_at = UTCDateTimeAttribute(null=True)


class RetentionAppRecord(ConversationsTableRecord):
    """Names one app that has retention settings. pk ``retention-apps#<shard>``, sk the app id.

    The sweep lists apps from these few partitions instead of scanning the table;
    written and removed in one transaction with the settings.
    """

    class Meta(_Connection):
        pass


class RetentionRunRecord(ConversationsTableRecord):
    """One sweep (or its summary so far) of an app. pk ``<app_id>#retention-run``, sk the run id.

    Run ids start with the start time, so a reverse query lists the newest first.
    ``counts``, ``by_channel`` and the user samples hold JSON text.
    """

    class Meta(_Connection):
        pass

    status = UnicodeAttribute()
    started_at = UTCDateTimeAttribute()
    finished_at = UTCDateTimeAttribute(null=True)
    summary = UnicodeAttribute()
    report_key = UnicodeAttribute(null=True)
    execution_arn = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    # The due-index layout the run started at (see RetentionSettingsRecord.layout).
    layout = NumberAttribute(null=True)
    # The generation (execution) that carries the run on: only it may finalize the run (absent: 0).
    generation = NumberAttribute(null=True)
    # Set when its execution timed out or was stopped: the scheduler finalizes it after this instant, once
    # the page a Lambda may still have been applying is committed.
    finalize_after = UTCDateTimeAttribute(null=True)
    # A finalize that spans invocations: how far it got (JSON: the users counted so far, the report's upload),
    # and the number of its last save, on which the next save and the run's end are conditioned.
    finalizing = UnicodeAttribute(null=True)
    finalize_seq = NumberAttribute(null=True)
    # How many finalize-only executions the run was handed to (``<run>_f<n>`` is the last; absent: none).
    finalize_handoff = NumberAttribute(null=True)


class RetentionLockRecord(ConversationsTableRecord):
    """The app's running sweep: at most one at a time. pk ``<app_id>#retention-lock``, sk ``lock``.

    ``expires_at`` (epoch seconds, the table's TTL attribute) frees the lock of a run that
    crashed without finalizing; acquiring tests it, since TTL removes items only eventually.
    """

    class Meta(_Connection):
        pass

    run_id = UnicodeAttribute()
    expires_at = NumberAttribute()


class RetentionUserRecord(ConversationsTableRecord):
    """What a run did to one user, so that each user counts once. pk ``<app_id>#retention-user#<run_id>``,
    sk the user id.

    ``outcome`` is kept or deleted (deleted replaces kept, never the reverse); ``detail`` says why a
    user was kept. Finalize counts the run's users and takes their samples from these items.
    """

    class Meta(_Connection):
        pass

    outcome = UnicodeAttribute()
    detail = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()


class RetentionRunPartRecord(ConversationsTableRecord):
    """What one shard of a run did (JSON text). pk ``<app_id>#retention-part#<run_id>``, sk the shard.

    ``expires_at`` (epoch seconds) is the table's TTL attribute: once the run's summary is
    written, DynamoDB removes its parts for free instead of a delete per part.
    """

    class Meta(_Connection):
        pass

    summary = UnicodeAttribute()
    # Pages committed so far; each commit is conditioned on it, so a retried step never counts a page twice.
    seq = NumberAttribute(default=0)
    position = UnicodeAttribute(null=True)
    done = BooleanAttribute(default=False)
    # The page held but not yet committed (JSON: its decisions' S3 key and the next position).
    pending = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)


class AudienceRecord(CatalogRecord):
    """An imported audience. pk ``<app_id>#audience``, sk the audience name.

    ``version`` points at the member buckets readers use; it moves, with the
    counts and the sequencer, in one conditional write (steward/audiences/).
    Held well below 4 KB, so an eventually consistent read costs half a unit.
    """

    class Meta(_Connection):
        pass

    status = UnicodeAttribute()
    # Whether the audience counts against the app's maximum (a refused new audience does not).
    counted = BooleanAttribute(default=False)
    version = UnicodeAttribute(null=True)
    partitions = NumberAttribute(null=True)
    buckets_per_partition = NumberAttribute(null=True)
    members_key = UnicodeAttribute(null=True)
    counts = UnicodeAttribute(null=True)
    invalid_samples = UnicodeAttribute(null=True)
    source_key = UnicodeAttribute(null=True)
    # S3 sequencers, upper-case and right-padded with zeros: compare as strings.
    sequencer = UnicodeAttribute(null=True)
    attempt_sequencer = UnicodeAttribute(null=True)
    attempt_started_at = UTCDateTimeAttribute(null=True)
    # The Lambda request of the attempt: Lambda retries a failed invocation under the same request id.
    attempt_request = UnicodeAttribute(null=True)
    # The sequencer whose `Audience Imported` event went out: a retry after the flip sends only a missing one.
    notified_sequencer = UnicodeAttribute(null=True)
    # The sequencer of the file ``last_failure`` is about, and the one whose failure was told: a retry tells a
    # recorded failure that was never told.
    failed_sequencer = UnicodeAttribute(null=True)
    failure_notified_sequencer = UnicodeAttribute(null=True)
    # The versions flips replaced that are not removed yet, each as "<sequencer> <version> <partitions>
    # <buckets per partition>" (the sequencer of the file whose flip replaced it). The flip's own write adds its
    # entry; the entry goes once the version is removed. Whatever finishes that file's flip (a retry, the lost-import
    # recorder), even after newer files flipped, finds there what to remove.
    unremoved = UnicodeSetAttribute(null=True)
    # A tombstone's removed version until the importer has removed it: a repeated DELETE asks for the removal again.
    removing_version = UnicodeAttribute(null=True)
    removing_partitions = NumberAttribute(null=True)
    removing_buckets_per_partition = NumberAttribute(null=True)
    imported_at = UTCDateTimeAttribute(null=True)
    last_failure = UnicodeAttribute(null=True)
    deleted_at = UTCDateTimeAttribute(null=True)
    refused_key = UnicodeAttribute(null=True)
    refused_at = UTCDateTimeAttribute(null=True)
    refused_sequencer = UnicodeAttribute(null=True)
    # The refused file whose refusal was told: a retry tells a noted refusal that was never told.
    refusal_notified_sequencer = UnicodeAttribute(null=True)


class AudiencePointerRecord(Model):
    """Where a ready audience's members are: pk ``<app_id>#audience-pointer``, sk the audience name.

    Membership lookups read this instead of the audience record, which long names, keys and
    failure samples can push past 4 KB: the pointer holds only the layout (about 1 KB at most),
    so a lookup stays at half a read unit for it and half for the bucket.
    """

    class Meta(_Connection):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    version = UnicodeAttribute()
    partitions = NumberAttribute()
    buckets_per_partition = NumberAttribute()
    members_key = UnicodeAttribute()


class AudienceCountRecord(CatalogRecord):
    """How many audiences count against the app's maximum. pk ``<app_id>#audience-count``, sk ``count``."""

    class Meta(_Connection):
        pass

    audiences = NumberAttribute(default=0)


class AudienceLiftedRecord(CatalogRecord):
    """The floor a lifted tombstone leaves: pk ``<app_id>#audience-lifted``, sk the audience name.

    ``sequencer`` is the last file imported before the deletion: a late event of it or of an older file (Lambda's
    retry, the lost-import recorder) neither imports it again nor records it failed once the record is gone. Only
    such late events need it, so ``expires_at`` (epoch seconds, the table's TTL attribute) lets it go for free.
    """

    class Meta(_Connection):
        pass

    sequencer = UnicodeAttribute()
    expires_at = NumberAttribute()


class AudienceBucketRecord(Model):
    """One packed hash bucket of an audience version: 12-byte hashes of its members' ids, sorted.

    pk ``<app_id>#audience-bucket#<version>#<bucket>``, sk ``m``: every bucket
    is its own partition, so an import writes at full speed. Kept under 4 KB
    (about 170 members), so a lookup costs at most half a read unit.
    """

    class Meta(_Connection):
        max_pool_connections = 16

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    # Absent in an empty bucket (DynamoDB keeps no empty binary).
    hashes = BinaryAttribute(legacy_encoding=False, null=True)


# Keys. Sharded collections are named here; sharding.partition_for and
# shard_key append ``#<shard>`` to a collection name.

APP_PROFILE_SK = "PROFILE"
API_KEY_SK_PREFIX = "KEY#"
SUBSCRIPTION_KEY_SEPARATOR = "|"


def app_pk(app_id: str) -> str:
    return f"APP#{app_id}"


def api_key_sk(key_id: str) -> str:
    return f"{API_KEY_SK_PREFIX}{key_id}"


def device_user_key(app_id: str, user_id: str) -> str:
    """The ``by_user`` index key of a device."""
    return f"{app_id}{SEPARATOR}{user_id}"


def subscription_key(resource_id: str, channel: str) -> str:
    """The key of a subscription in a profile's ``subscriptions`` map."""
    return f"{resource_id}{SUBSCRIPTION_KEY_SEPARATOR}{channel}"


def resources_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}resource"


def regions_collection(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}region"


def loyalty_programs_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}loyalty"


def promo_codes_collection(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}promo"


def segments_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}segment"


def segment_names_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}segment-name"


def segment_members_collection(app_id: str, segment_id: str) -> str:
    return f"{app_id}{SEPARATOR}segment{SEPARATOR}{segment_id}"


def receipts_pk(app_id: str, scope: str) -> str:
    return f"{app_id}{SEPARATOR}receipt{SEPARATOR}{scope}"


def tags_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}tags"


def tag_members_collection(app_id: str, tag: str) -> str:
    return f"{app_id}{SEPARATOR}tag{SEPARATOR}{tag}"


AUDIT_HEAD_SK = "head"


def audit_entries_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}audit"


def audit_head_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}audit-head"


def audit_jobs_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}audit-job"


JOB_LOCK_SK = "lock"


def jobs_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}job"


def job_parts_pk(app_id: str, job_id: str) -> str:
    return f"{app_id}{SEPARATOR}job-part{SEPARATOR}{job_id}"


def job_lock_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}job-lock"


def conversations_collection(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}conversation"


DEFAULT_DUE_GROUP = "_"


def due_group(overridden_channel: str | None) -> str:
    """A due-index group: ``@<channel>`` for a channel with overrides, ``_`` for the app's defaults.

    The ``@`` keeps a channel named ``_`` apart from the defaults.
    """
    return DEFAULT_DUE_GROUP if overridden_channel is None else f"@{overridden_channel}"


def conversations_due_collection(app_id: str, group: str, status: str) -> str:
    """The due index's partitions of one group and status; shard_key appends the shard."""
    return f"{app_id}{SEPARATOR}conversation-due{SEPARATOR}{group}{SEPARATOR}{status}"


def conversation_user_key(app_id: str, user_id: str) -> str:
    return f"{app_id}{SEPARATOR}{user_id}"


RETENTION_SETTINGS_SK = "settings"
RETENTION_APPS_COLLECTION = "retention-apps"


def retention_settings_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}retention"


def retention_runs_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}retention-run"


def retention_lock_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}retention-lock"


RETENTION_LOCK_SK = "lock"


def retention_users_pk(app_id: str, run_id: str) -> str:
    return f"{app_id}{SEPARATOR}retention-user{SEPARATOR}{run_id}"


def retention_parts_pk(app_id: str, run_id: str) -> str:
    return f"{app_id}{SEPARATOR}retention-part{SEPARATOR}{run_id}"


AUDIENCE_COUNT_SK = "count"
AUDIENCE_BUCKET_SK = "m"


def audiences_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}audience"


def audience_pointer_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}audience-pointer"


def audience_count_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}audience-count"


def audience_lifted_pk(app_id: str) -> str:
    return f"{app_id}{SEPARATOR}audience-lifted"


def audience_bucket_pk(app_id: str, version: str, bucket: int) -> str:
    return f"{app_id}{SEPARATOR}audience-bucket{SEPARATOR}{version}{SEPARATOR}{bucket}"


def audience_members_key(app_id: str, version: str) -> str:
    """The S3 key of an audience version's member list (the data bucket)."""
    return f"members/{app_id}/{version}.txt"


def bind_apps_table(apps_table: str) -> None:
    """Point the app and API key models at this stack's apps table (all the authorizer needs)."""
    AppRecord.Meta.table_name = apps_table
    ApiKeyRecord.Meta.table_name = apps_table


def bind_tables(settings: StoreSettings) -> None:
    """Point the models at this stack's tables. Called once per cold start."""
    bind_apps_table(settings.apps_table)
    DeviceRecord.Meta.table_name = settings.devices_table
    ProfileRecord.Meta.table_name = settings.profiles_table
    for catalog_model in (
        ResourceRecord,
        RegionRecord,
        LoyaltyProgramRecord,
        PromoCodeRecord,
        SegmentRecord,
        SegmentNameRecord,
        SegmentMemberRecord,
        ReceiptRecord,
        TagRecord,
        TagMemberRecord,
        AuditEntryRecord,
        AuditHeadRecord,
        AuditJobRecord,
        JobItemRecord,
        JobPartRecord,
        JobLockRecord,
        AudienceRecord,
        AudienceCountRecord,
        AudienceBucketRecord,
        AudiencePointerRecord,
        AudienceLiftedRecord,
    ):
        catalog_model.Meta.table_name = settings.catalog_table
    if isinstance(settings, ConversationStoreSettings):
        for conversations_model in (
            ConversationRecord,
            RetentionSettingsRecord,
            RetentionAppRecord,
            RetentionRunRecord,
            RetentionLockRecord,
            RetentionUserRecord,
            RetentionRunPartRecord,
        ):
            conversations_model.Meta.table_name = settings.conversations_table
