"""What a bulk tag request did to each device, collected as its chunks are written."""

from dataclasses import dataclass, field

from steward.tags.models import MAX_TAGS_PER_DEVICE, BulkTagOutcome
from steward.tags.repository import TagChange


@dataclass
class Tally:
    tag: str
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    not_found: list[str] = field(default_factory=list)
    too_many_tags: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def settle(self, change: TagChange, tags: frozenset[str] | None) -> bool:
        """Record the outcome the device's stored ``tags`` (None: no device) already decide.

        True when the change still has to be written.
        """
        if tags is None:
            self.not_found.append(change.device_id)
        elif (self.tag in tags) == change.add:  # already tagged, or already untagged
            self.unchanged += 1
        elif change.add and len(tags) >= MAX_TAGS_PER_DEVICE:
            self.too_many_tags.append(change.device_id)
        else:
            return True
        return False

    def written(self, changes: list[TagChange]) -> None:
        added = sum(1 for change in changes if change.add)
        self.added += added
        self.removed += len(changes) - added

    def fail(self, changes: list[TagChange]) -> None:
        self.failed.extend(change.device_id for change in changes)

    def outcome(self, device_count: int) -> BulkTagOutcome:
        return BulkTagOutcome(
            added=self.added,
            removed=self.removed,
            unchanged=self.unchanged,
            not_found=self.not_found,
            too_many_tags=self.too_many_tags,
            invalid=self.invalid,
            failed=self.failed,
            device_count=device_count,
        )
