"""Per-tenant publish quotas for the sidecar and the SDK: a rate (a token bucket per publisher
process) and a daily volume (summed over every publisher in a NATS KV bucket).

``limits`` (the values and the bucket's keys), ``bucket`` (the KV reads and writes), ``meter``
(the check on the publish path), ``keeper`` (the supervised part: follows the limits, merges the
counts, sends ``quota.warning`` / ``quota.exceeded``), ``metrics``.
"""
