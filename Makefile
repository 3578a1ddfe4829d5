# kiln build. `make` builds build/kiln (release); `make debug` and `make asan` build variants under
# build/debug and build/asan; `make test` builds release + asan and runs every test in both.
# Sources are found by wildcard: one concern per file, no list to keep in sync.
CC      ?= gcc
SHARED  ?= ../shared
MODE    ?= release
PKGS    := jansson libpcre2-8 libcurl libmicrohttpd libedit icu-uc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iinclude -Isrc $(PKG_CFLAGS) -pthread -MMD -MP
ifeq ($(MODE),release)
  OUT     := build
  CFLAGS  := $(BASE_CFLAGS) -O2 -g
  LDFLAGS := -pthread
else ifeq ($(MODE),debug)
  OUT     := build/debug
  CFLAGS  := $(BASE_CFLAGS) -O0 -g -Werror
  LDFLAGS := -pthread
else ifeq ($(MODE),asan)
  OUT     := build/asan
  SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  CFLAGS  := $(BASE_CFLAGS) -O1 -g -Werror $(SAN)
  LDFLAGS := -pthread $(SAN)
endif
LIBS := $(PKG_LIBS) -lcrypto -lm

# The commit is baked into the bench/env reports (only env.o sees it, so other objects don't rebuild).
GIT_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
$(OUT)/obj/src/bench/env.o: CFLAGS += -DKILN_GIT_COMMIT='"$(GIT_COMMIT)"'

# Kernel files named *_avx512.c / *_avx2.c get their ISA flags; callers pick them at run time from CPUID.
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512bf16 -mavx512dq -mfma -mf16c -mavx2
AVX2_FLAGS   := -mavx2 -mfma -mf16c

LIB_SRC  := $(wildcard src/*/*.c)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(OUT)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(OUT)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(OUT)/tests/%)

all: $(OUT)/kiln $(TEST_BIN)

$(OUT)/libkiln.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@ # rebuilt whole: a removed source must not leave its object behind in the archive
	ar rcs $@ $^

$(OUT)/kiln: $(CLI_OBJ) $(OUT)/libkiln.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(OUT)/libkiln.a $(LIBS)

$(OUT)/tests/%: tests/%.c tests/check.h $(OUT)/libkiln.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(OUT)/libkiln.a $(LIBS)

$(OUT)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(OUT)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

debug:
	$(MAKE) MODE=debug
asan:
	$(MAKE) MODE=asan

# The whole suite, twice: optimised, then under AddressSanitizer + UBSan + LeakSanitizer.
test:
	$(MAKE) MODE=release
	$(MAKE) MODE=asan
	SHARED=$(SHARED) tests/run.sh build build/asan

# Quick loop while developing: release build only.
test-fast:
	$(MAKE) MODE=release
	SHARED=$(SHARED) tests/run.sh build

# The README's main job: a greedy story from the real trained stories260K model.
demo: all
	./build/kiln run --model $(SHARED)/models/stories260K --raw --greedy --prompt "Once upon a time" --max-new-tokens 200

bench: all
	bench/run.sh

clean:
	rm -rf build

.PHONY: all debug asan test test-fast demo bench clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
