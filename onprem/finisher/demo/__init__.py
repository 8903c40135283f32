"""``finisher demo``: the whole pipeline on a local moto server, and the harness the tests and benchmarks reuse.

- :mod:`.moto_env` — ``local_aws(environment)``: a loopback moto server with the environment's resources.
- :mod:`.sample_bags` — small but real BDRC bags (bagit, sha512), zipped the way bdrc-bag zips them.
- :mod:`.events` — the exact EventBridge "Object Restore Completed" event of a restored object.
- :mod:`.verify` — re-hash an archive's copies against the bags' manifests.
- :mod:`.run` — the orchestration ``finisher demo`` prints.
"""
