"""API errors in the Z.AI wire shape: {"error": {"code": "<business code>", "message": "..."}}.

The HTTP status goes with the code (shared/research/zai-api-spec.md section 7). 429s that waiting
will not fix carry `x-should-retry: false`, so the SDKs do not retry them.
"""
from __future__ import annotations

from fastapi.responses import JSONResponse

AUTH_FAILED, NO_AUTH, INVALID_TOKEN, TOKEN_EXPIRED, TOKEN_VERIFY = "1000", "1001", "1002", "1003", "1004"
BAD_PARAMS, NO_MODEL, MISSING_FIELD, INVALID_FIELD, PROMPT_TOO_LONG = "1210", "1211", "1213", "1214", "1261"
TOO_CONCURRENT, TOO_FREQUENT, OVERLOADED = "1302", "1303", "1305"
NOT_FOUND, INTERNAL = "404", "500"

STATUS = {AUTH_FAILED: 401, NO_AUTH: 401, INVALID_TOKEN: 401, TOKEN_EXPIRED: 401, TOKEN_VERIFY: 401,
          BAD_PARAMS: 400, NO_MODEL: 400, MISSING_FIELD: 400, INVALID_FIELD: 400, PROMPT_TOO_LONG: 400,
          TOO_CONCURRENT: 429, TOO_FREQUENT: 429, OVERLOADED: 429, NOT_FOUND: 404, INTERNAL: 500}


class APIError(Exception):
    def __init__(self, code: str, message: str, retry: bool | None = None):
        super().__init__(message)
        self.code, self.message, self.retry = code, message, retry

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def response(self) -> JSONResponse:
        headers = {} if self.retry is None else {"x-should-retry": "true" if self.retry else "false"}
        return JSONResponse(self.body(), status_code=self.status, headers=headers)
