"""Schemathesis hooks for the contract check (loaded through SCHEMATHESIS_HOOKS).

They drop the generated requests that cannot test the operation they were
generated for, and nothing else:

- A path parameter holding '?' or '#' (or '/' outside a device or user id):
  API Gateway decodes the path and cuts it at '?' or '#', so the request
  reaches another route. The document says so with each parameter's pattern;
  schemathesis's negative mode still breaks patterns on purpose.
- Revoking the key the run uses: the run would carry on with a dead key, and
  every later request would only test the 401.
"""

import os
from typing import Any

import schemathesis

KEY_ID_VARIABLE = "STEWARD_CONTRACT_KEY_ID"
_MULTI_SEGMENT = frozenset({"device_id", "user_id"})  # the routes find where these end (steward.http.paths)


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    parameters: dict[str, Any] = case.path_parameters or {}
    for name, value in parameters.items():
        text = str(value)
        if "?" in text or "#" in text or ("/" in text and name not in _MULTI_SEGMENT):
            return False
    own_key = os.environ.get(KEY_ID_VARIABLE)
    revoking = case.method.upper() == "DELETE" and case.path == "/v1/api-keys/{key_id}"
    return not (revoking and own_key is not None and str(parameters.get("key_id")) == own_key)
