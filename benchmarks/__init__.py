"""The ecr-oci push benchmark (issue 2, part 12): ``make bench`` = ``python -m benchmarks``.

    $ .venv/bin/python -m benchmarks --quick --no-write     # 64 MiB smoke run, docs untouched
    $ .venv/bin/python -m benchmarks                         # 1 GiB, rewrites docs/benchmarks.md

One run starts one fresh ``docker-registry`` in a temp dir and measures, against it:

1. a full push of a bundle with a random model by ecr-oci and by its peers (oras, crane, skopeo)
   pushing the same amount of data, each from its own random bytes so no one profits from the
   registry's de-duplication, in ``--repeat`` interleaved rounds (:mod:`benchmarks.contenders`);
2. a no-op re-push of the same bundle with a warm layer cache;
3. a code-only update: the bytes the registry serves to ``podman pull`` of v2 after v1.

Per push: wall time, MB/s, the client's own peak RSS and CPU time (:mod:`benchmarks.measure`),
and the registry's CPU time. It is not a test: it prints a table with PASS/MISS per target
(:mod:`benchmarks.report`) and writes the figures between the markers of ``docs/benchmarks.md``,
which also explains the method. Everything it creates lives in one temp dir, removed at the end.
"""
