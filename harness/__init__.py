"""The development harness, never part of the product: the demo (``python -m harness``, ``make demo``) runs the
whole pipeline on a local moto server, and the tests and benchmarks reuse its pieces.

Harness (small API, loopback only)::

    with local_aws(load_environment("dev")) as aws:          # moto_env: server + the environment's resources
        sample = build_sample_zip(tmp, SampleSpec("NLM", ("W1NLM4700",)))   # bags
        staged = stage_sample(aws, sample)                   # pipeline: DEEP_ARCHIVE under the staging key
        run_finisher(aws, FinisherPaths(out), ["run", "--drain"])
        verify_work_in_archive(FinisherPaths(out).archive_root, sample.works[0])   # verify

- :mod:`.moto_server` — a moto server on 127.0.0.1 (thread or child process) and the loopback guard.
- :mod:`.moto_env` — ``local_aws(environment)``: every client pointed at the server, resources provisioned.
- :mod:`.bags` — the one builder of work trees, BagIt bags and their zips: a test's bag (any algorithms, sizes,
  stored or deflated, plain work zips, ``zip_tree``), a demo work (``SampleSpec``, zipped as bdrc-bag zips) and a
  bench bag written straight into its zip (``make_streamed_bag_zip``, GiBs in one pass).
- :mod:`.zip_edits` — one fault put into a built zip: a member dropped, added, tampered, a tag file edited.
- :mod:`.events` — the exact EventBridge "Object Restore Completed" event of a restored object.
- :mod:`.lambda_runtime` — the real notify_restore handler run per region, as Lambda would.
- :mod:`.pipeline` — the demo's steps without printing (stage, deliver events, run the finisher).
- :mod:`.work_status` — the finisher CLI's ``request-restore`` arguments and ``status --json`` reading.
- :mod:`.verify` — re-hash an archive's copies against the bags' manifests.
- :mod:`.run`, :mod:`.report`, :mod:`.command` — the orchestration and what ``make demo`` prints.
- :mod:`.proxy` — a loopback TCP proxy shaping each connection (rate cap, resets), for tests and benchmarks.
- :mod:`.hosts` — finisher hosts on one machine: a network namespace each, its link capped by ``tc``.
- :mod:`.fleet` — finishers on those hosts (or plain processes) sharing one ledger and one archive.
- :mod:`.postgres` — a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) for a shared ledger.
"""
