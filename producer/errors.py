"""Faults of the Finnhub sources that the user must fix (bad key, no access, bad URL): reported in one line and
never retried, unlike network faults and rate limits, which the sources ride out."""


class FinnhubError(RuntimeError):
    pass


class ApiKeyRejected(FinnhubError):
    pass


class AccessDenied(FinnhubError):
    pass
