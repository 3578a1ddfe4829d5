# kiln build. `make` builds build/kiln (release); `make debug` and `make asan` build variants under
# build/debug and build/asan; `make test` builds release + asan and runs every test in both.
# Sources are found by wildcard: one concern per file, no list to keep in sync.
.DEFAULT_GOAL := all
CC      ?= gcc
SHARED  ?= ../shared
MODE    ?= release
# The libraries are the pkg-config modules of deps/debian-packages.txt (the one list of what kiln needs).
# deps/install.sh runs before anything is compiled (it installs what is missing, or says how), so their
# flags are asked for lazily, on first use, once: after the install, not when the Makefile is read.
PKGS    := $(shell awk '$$1 == "build" && $$2 == "pc" {print $$3}' deps/debian-packages.txt)
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS) 2>/dev/null))$(PKG_LIBS)

# MPI (tensor / pipeline parallel, src/dist/) is a build option: linked when Open MPI's pkg-config module is
# there (deps/debian-packages.txt lists it for the tests), else dist_none.c answers --tp/--pp with an error.
# Only src/dist/ sees mpi.h; a stamp named after the choice rebuilds those objects when it changes.
MPI_PC := $(shell pkg-config --exists ompi-c 2>/dev/null && echo ompi-c)
ifneq ($(MPI_PC),)
  MPI_CFLAGS = $(shell pkg-config --cflags ompi-c) -DKILN_MPI
  MPI_LIBS   = $(shell pkg-config --libs ompi-c)
endif

BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iinclude -Isrc $(PKG_CFLAGS) -pthread -MMD -MP
ifeq ($(MODE),release)
  OUT     := build
  CFLAGS   = $(BASE_CFLAGS) -O2 -g
  LDFLAGS := -pthread
else ifeq ($(MODE),debug)
  OUT     := build/debug
  CFLAGS   = $(BASE_CFLAGS) -O0 -g -Werror
  LDFLAGS := -pthread
else ifeq ($(MODE),asan)
  OUT     := build/asan
  SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  CFLAGS   = $(BASE_CFLAGS) -O1 -g -Werror $(SAN)
  LDFLAGS := -pthread $(SAN)
endif
LIBS = $(PKG_LIBS) $(MPI_LIBS) -lm

# The commit is baked into one object (kiln_build_commit: kiln --version, bench reports), so nothing else rebuilds.
GIT_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
$(OUT)/obj/src/common/version.o: CFLAGS += -DKILN_GIT_COMMIT='"$(GIT_COMMIT)"'
# ... and rebuilt when the commit changes: it depends on a stamp file named after the commit.
COMMIT_STAMP := $(OUT)/commit-$(GIT_COMMIT).stamp
$(COMMIT_STAMP):
	@mkdir -p $(dir $@) && rm -f $(OUT)/commit-*.stamp && touch $@
$(OUT)/obj/src/common/version.o: $(COMMIT_STAMP)

MPI_STAMP := $(OUT)/mpi-$(if $(MPI_PC),yes,no).stamp
$(MPI_STAMP):
	@mkdir -p $(dir $@) && rm -f $(OUT)/mpi-*.stamp && touch $@
$(OUT)/obj/src/dist/%.o: CFLAGS += $(MPI_CFLAGS)
$(OUT)/obj/src/dist/%.o: $(MPI_STAMP)

# Kernel files named *_avx512.c / *_avx2.c / *_amx.c get their ISA flags; callers pick them at run time from CPUID.
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512bf16 -mavx512dq -mfma -mf16c -mavx2
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AMX_FLAGS    := $(AVX512_FLAGS) -mamx-tile -mamx-bf16

LIB_SRC  := $(wildcard src/*/*.c)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(OUT)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(OUT)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(OUT)/tests/%)
BENCH_BIN := $(patsubst bench/%.c,$(OUT)/bench/%,$(wildcard bench/*.c))
# The fuzz suite (tests/fuzz/, issue 19) is one test binary made of several files.
FUZZ_SRC := $(wildcard tests/fuzz/*.c)
TEST_BIN += $(OUT)/tests/test_fuzz

all: $(OUT)/kiln $(TEST_BIN)

$(OUT)/libkiln.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@ # rebuilt whole: a removed source must not leave its object behind in the archive
	ar rcs $@ $^

$(OUT)/kiln: $(CLI_OBJ) $(OUT)/libkiln.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(OUT)/libkiln.a $(LIBS)

$(OUT)/tests/%: tests/%.c tests/check.h $(OUT)/libkiln.a | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(OUT)/libkiln.a $(LIBS) $(TEST_LDFLAGS)

# The allocation-failure test sees every allocation libkiln.a makes: the linker sends them (and JSON
# parses) to its __wrap_* functions, which count them and fail the N-th.
$(OUT)/tests/test_alloc_fail: TEST_LDFLAGS := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free \
    -Wl,--wrap=strdup,--wrap=strndup,--wrap=posix_memalign,--wrap=aligned_alloc,--wrap=json_loadb,--wrap=json_loads -rdynamic

# Benchmark programs (bench/*.c; the bench/*.sh scripts build and run them): build/bench/<name>.
$(OUT)/bench/%: bench/%.c $(OUT)/libkiln.a | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(OUT)/libkiln.a $(LIBS)

$(OUT)/tests/test_fuzz: $(FUZZ_SRC) tests/fuzz/fuzz.h $(OUT)/libkiln.a | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $(FUZZ_SRC) $(OUT)/libkiln.a $(LIBS)

$(OUT)/obj/%_avx512.o: %_avx512.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(OUT)/obj/%_amx.o: %_amx.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AMX_FLAGS) -c $< -o $@

$(OUT)/obj/%_avx2.o: %_avx2.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(OUT)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

debug:
	$(MAKE) MODE=debug
asan:
	$(MAKE) MODE=asan

# What the build needs (deps/debian-packages.txt): installed as root, else the apt-get line to run.
# Costs a few pkg-config / command -v probes when everything is there.
deps:
	@deps/install.sh build
# ... and what the tests need on top: python3 + numpy, node + npm, and the serve tests' OpenAI client.
deps-test:
	@deps/install.sh test
	@[ -d tests/serve/node_modules ] || npm ci --prefix tests/serve --silent --no-audit --no-fund

# The whole suite, twice: optimised, then under AddressSanitizer + UBSan + LeakSanitizer.
test: deps-test
	$(MAKE) MODE=release
	$(MAKE) MODE=asan
	SHARED=$(SHARED) tests/run.sh build build/asan

# Quick loop while developing: release build only.
test-fast: deps-test
	$(MAKE) MODE=release
	SHARED=$(SHARED) tests/run.sh build

# The README's main job: a greedy story from the real trained stories260K model.
demo: deps
	$(MAKE) MODE=release
	./build/kiln run --model $(SHARED)/models/stories260K --raw --greedy --prompt "Once upon a time" --max-new-tokens 200

# Builds the benchmark programs; the bench/*.sh scripts run them (benchmarks are not tests).
bench: $(BENCH_BIN)

clean:
	rm -rf build

.PHONY: all deps deps-test debug asan test test-fast demo bench clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
