"""Every message a client can read in an error, in one place so tests can assert on them."""

UNAUTHENTICATED = (
    "Authentication credentials were not provided or are invalid: "
    "send the header 'Authorization: Token <key>'."
)
NO_ORGANIZATION_ACCESS = "You do not have access to this organization."
NO_ACTIVE_SUBSCRIPTION = "This organization does not have an active subscription."
NO_SETTINGS_PERMISSION = "You do not have the settings permission needed to change experiments."
EXPERIMENT_NOT_FOUND = "Experiment not found."
INVALID_REQUEST = "The request has invalid attributes; see the field violations."
INTERNAL = "Internal error."
UNAVAILABLE = "The service is unavailable; try again shortly."
BUSY = "The server is busy with other calls; retry after a second."
ETAG_MISMATCH = (
    "The experiment has changed since it was read (if-match does not name its current etag); "
    "read it again and retry."
)

REQUIRED = "This attribute is required."
REQUIRED_WHEN_PUBLISHED = (
    "This attribute is required when the experiment is published (is_draft is false)."
)
NOT_A_UUID = "Must be a UUID."
BLANK = "Must not be blank."
TOO_LONG = "Must be at most {limit} characters."
DUPLICATE_ROOM = "This room is listed more than once."
GOAL_NOT_IN_ORGANIZATION = "No goal with this ID exists in the organization."
ROOM_NOT_IN_ORGANIZATION = "No room with this ID exists in the organization."
PERCENTAGE_RANGE = "Must be an integer from 0 to 100."
PERCENTAGES_TOTAL = "Group percentages must add up to 100 (they add up to {total})."
GROUP_TYPE_CHOICES = (
    "Must be one of control, user_defined, target_algorithm, target_random or null."
)
RESET_INTERVAL_CHOICES = "Must be one of full, 1w or 1d."
ENDS_BEFORE_START = "ends_at must not be before starts_at."
EXPERIMENT_ENDED = "The experiment has ended and can no longer be updated."
CANNOT_RETURN_TO_DRAFT = "A published experiment cannot be changed back to a draft."
READ_ONLY_AFTER_START = (
    "Read-only once the experiment has started; send the current value or omit it."
)
GROUPS_FIXED_AFTER_START = (
    "Groups cannot be added or removed once the experiment has started ({count} groups)."
)
TOO_MANY_GROUPS = "At most {limit} groups are allowed."
PAGE_SIZE_NEGATIVE = "Must not be negative."
INVALID_CURSOR = "This cursor is not valid; use a next or previous URL from a list response."
INVALID_FEED_CURSOR = (
    "This cursor is not valid; use a cursor from a change, a heartbeat or a next_cursor."
)
CURSOR_TOO_OLD = (
    "The history after this cursor is no longer kept; list the experiments again, "
    "then follow the changes from a new cursor."
)
CURSOR_AHEAD = (
    "This cursor is beyond the history this service holds (was the database restored?); "
    "list the experiments again, then follow the changes from a new cursor."
)
STOPPING = "The server is stopping; resume from your last cursor (another server will answer)."
MALFORMED_ETAG = 'Must be *, or a comma-separated list of etags such as "3".'
IDEMPOTENCY_KEY_LENGTH = "Must be 1 to {limit} characters."
IDEMPOTENCY_KEY_REUSED = (
    "This idempotency key was already used for a different request; use a new key."
)
TOO_MANY_ROOMS = "At most {limit} rooms are allowed."
UNSTORABLE_TEXT = "Must not contain the NUL character (U+0000) or unpaired surrogates."
TREATMENT_UNSTORABLE_TEXT = (
    "Keys and strings must not contain the NUL character (U+0000) or unpaired surrogates."
)
UNPAIRED_SURROGATE = "Must be Unicode text: no unpaired surrogates (U+D800 to U+DFFF)."
TREATMENT_NOT_FINITE = "Numbers must be finite (no NaN or Infinity)."
TREATMENT_TOO_DEEP = "Must not nest objects and arrays more than {limit} levels deep."
TREATMENT_TOO_LARGE = "Must be at most {limit} bytes as JSON."
EXPERIMENT_TOO_LARGE = (
    "The experiment is too large: at most {limit} bytes of names, IDs and treatments as JSON."
)
TIME_OUT_OF_RANGE = "Must be a time from 1970-01-01T00:00:00Z up to (not including) 9999-01-01."
INVALID_TIMESTAMP = "Not a valid timestamp (seconds or nanos out of range)."
ENDS_IN_THE_PAST = "ends_at has passed: an experiment cannot be published with an end in the past."
MORE_VIOLATIONS = "{count} more violations were left out; fix these and send again."
REQUEST_TOO_LARGE = "The request is larger than the limit of {limit} bytes."
HEADERS_TOO_LARGE = "The request headers are larger than the limit of {limit} bytes."
# The gateway's: a query parameter that names a field the REST path sets (gateway/envoy.yaml).
PATH_FIELD_IN_QUERY = "Set by the path; a query parameter may not set it."
UNREADABLE_REQUEST = (
    "The request could not be read as {message}: malformed protobuf, invalid UTF-8 text, "
    "or nested too deeply."
)
