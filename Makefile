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
CFLAGS   += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
            -Wno-unused-parameter -Wno-format-truncation -fno-strict-aliasing -Iinclude -Isrc $(PKG_CFLAGS) -MMD -MP
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

export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

.PHONY: all deps demo test unit integration asan bench fuzz clean
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

unit: $(TEST_BIN)
	@scripts/run-unit-tests.sh $(TEST_BIN)

integration: $(BUILD)/raffle
	@scripts/run-integration-tests.sh $(BUILD)/raffle

test:
	@scripts/install-deps.sh --with-test
	@$(MAKE) --no-print-directory all $(TEST_BIN)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

asan:
	@scripts/install-deps.sh --with-test
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build-asan/raffle $(TEST_SRC:tests/unit/%.c=build-asan/tests/%)
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  scripts/run-unit-tests.sh $(TEST_SRC:tests/unit/%.c=build-asan/tests/%)

demo:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

bench:
	@scripts/install-deps.sh --with-bench
	@$(MAKE) --no-print-directory all
	@bench/run-all.sh

clean:
	rm -rf build build-asan

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
