"""XLA flags for the tests' processes and the trainers they start: on 2 cores the suite's time is
mostly XLA compiling small programs, not running them. Measured on the mesh, GAN and decoding
tests: backend compile time 445 -> 225 s, their wall time 329 -> 207 s, with the same losses.
- level 0: LLVM optimises the generated code less;
- no fusion emitters: the older elemental emitter compiles each fusion faster;
- one codegen split: the other pytest worker already has the second core.
tests/test_default_compiler_level.py re-checks the central equalities with XLA's defaults, the
flags users run."""

FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false",
                "--xla_cpu_parallel_codegen_split_count=1")
