# jobq — top-level build. `make` builds the service, the CLI and the client library;
# `make test`, `make run`, `make migrate`, `make bench` are the contract's entry points.
# Generated protobuf-c code goes to $(BUILD)/gen and is never committed.

BUILD    ?= build
CC       ?= gcc
SAN      ?=
PKG_CONFIG ?= pkg-config

# Sanitizer builds live in their own tree so they never mix objects with the normal one.
ifeq ($(SAN),1)
  BUILD      := build-asan
  SANFLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  OPTFLAGS   := -O1
else
  SANFLAGS   :=
  OPTFLAGS   := -O2
endif

WARNFLAGS = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
CFLAGS   ?= $(OPTFLAGS) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARNFLAGS) $(CFLAGS) $(SANFLAGS) -pthread -MMD -MP
CPPFLAGS_ALL = -I$(BUILD)/gen -Iservice -Iclient $(shell $(PKG_CONFIG) --cflags libprotobuf-c libpq 2>/dev/null)
LDLIBS_ALL = -lnng $(shell $(PKG_CONFIG) --libs libprotobuf-c libpq 2>/dev/null) -pthread -lm
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

PROTO      := proto/jobq/v1/jobq.proto
PROTO_C    := $(BUILD)/gen/jobq/v1/jobq.pb-c.c
PROTO_H    := $(BUILD)/gen/jobq/v1/jobq.pb-c.h
PROTO_O    := $(BUILD)/obj/gen/jobq/v1/jobq.pb-c.o

SVC_SRC    := $(filter-out service/main.c,$(wildcard service/*.c))
# The console's pages, compiled into jobqd (service/console/embed.sh).
CONSOLE_FILES := $(sort $(wildcard service/console/*.html service/console/*.js service/console/*.css))
CONSOLE_C  := $(BUILD)/gen/jq_console_assets.c
CONSOLE_O  := $(BUILD)/obj/gen/jq_console_assets.o
SVC_OBJ    := $(SVC_SRC:%.c=$(BUILD)/obj/%.o) $(CONSOLE_O)
CLI_SRC    := $(wildcard client/cli*.c)
CLI_OBJ    := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
LIB_SRC    := $(filter-out $(CLI_SRC),$(wildcard client/*.c))
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(PROTO_O)
TEST_SRC   := $(wildcard tests/unit/test_*.c tests/integration/test_*.c tests/chaos/test_*.c)
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_SRC := $(wildcard tests/support/*.c)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_SRC  := $(wildcard tests/bench/bench_*.c)
BENCH_BIN  := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(filter-out tests/bench/bench_util.c,$(BENCH_SRC)))
BENCH_UTIL_OBJ := $(BUILD)/obj/tests/bench/bench_util.o

LIBJOBQ    := $(BUILD)/lib/libjobq.a
LIBJOBQD   := $(BUILD)/lib/libjobqd.a
JOBQD      := $(BUILD)/bin/jobqd
JOBQ       := $(BUILD)/bin/jobq
EXAMPLES   := $(patsubst client/examples/%.c,$(BUILD)/bin/examples/%,$(wildcard client/examples/*.c))

.PHONY: all bootstrap test check-asan tests benches run migrate bench fuzz soak clean
.DEFAULT_GOAL := all

all: $(JOBQD) $(JOBQ) $(LIBJOBQ) $(EXAMPLES)

$(PROTO_C) $(PROTO_H) &: $(PROTO)
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen -Iproto $(PROTO)

# Every object waits for the generated header (order-only: regenerating it is tracked by -MMD).
$(BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(ALL_CFLAGS) -c $< -o $@

$(CONSOLE_C): $(CONSOLE_FILES) service/console/embed.sh
	@mkdir -p $(dir $@)
	service/console/embed.sh $(CONSOLE_FILES) > $@.tmp && mv $@.tmp $@

$(CONSOLE_O): $(CONSOLE_C) service/jq_console.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(ALL_CFLAGS) -c $< -o $@

# Generated code is not ours to keep warning-free beyond -Wall.
$(PROTO_O): $(PROTO_C)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -std=c11 -D_GNU_SOURCE -Wall -Werror $(CFLAGS) $(SANFLAGS) -c $< -o $@

$(LIBJOBQ): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBJOBQD): $(SVC_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(JOBQD): $(BUILD)/obj/service/main.o $(LIBJOBQD) $(LIBJOBQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(JOBQ): $(CLI_OBJ) $(LIBJOBQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# Examples link against the library only, exactly as a user's program would.
$(BUILD)/bin/examples/%: $(BUILD)/obj/client/examples/%.o $(LIBJOBQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT_OBJ) $(LIBJOBQD) $(LIBJOBQ) | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Itests/support $(ALL_CFLAGS) $(LDFLAGS_ALL) -o $@ $< $(TEST_SUPPORT_OBJ) $(LIBJOBQD) $(LIBJOBQ) $(LDLIBS_ALL) -lcmocka

FUZZ_REPLAY := $(BUILD)/tests/fuzz/fuzz_rpc_replay
FUZZ_SECONDS ?= 60

# The fuzz target replayed over the committed corpus with gcc (a regression test in make test).
$(FUZZ_REPLAY): tests/fuzz/fuzz_rpc.c tests/fuzz/corpus_main.c $(LIBJOBQD) $(LIBJOBQ) | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(ALL_CFLAGS) $(LDFLAGS_ALL) -o $@ tests/fuzz/fuzz_rpc.c tests/fuzz/corpus_main.c $(LIBJOBQD) $(LIBJOBQ) $(LDLIBS_ALL)

tests: all $(TEST_BIN) $(FUZZ_REPLAY)

# libFuzzer on the envelope decoder and every method's validation, for FUZZ_SECONDS (default 60).
# Needs clang and compiler-rt (installed by the bootstrap's fuzz profile). New inputs go to
# build-fuzz/corpus; crashes to build-fuzz/ (copy a crash into tests/fuzz/corpus once fixed).
fuzz: $(PROTO_H)
	@deploy/bootstrap.sh fuzz
	@mkdir -p build-fuzz/corpus
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -I$(BUILD)/gen -Iservice -o build-fuzz/fuzz_rpc tests/fuzz/fuzz_rpc.c service/jq_validate.c service/jq_wire.c service/jq_cron.c \
	  $(PROTO_C) $(shell $(PKG_CONFIG) --cflags --libs libprotobuf-c 2>/dev/null)
	cd build-fuzz && ./fuzz_rpc -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 \
	  corpus ../tests/fuzz/corpus

# Benchmark programs link both libraries: the raw-SQL baseline runs jobqd's own jq_db module.
$(BUILD)/bench/%: tests/bench/%.c $(BENCH_UTIL_OBJ) $(LIBJOBQD) $(LIBJOBQ) | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Itests/bench $(ALL_CFLAGS) $(LDFLAGS_ALL) -o $@ $< $(BENCH_UTIL_OBJ) $(LIBJOBQD) $(LIBJOBQ) $(LDLIBS_ALL)

benches: all $(BENCH_UTIL_OBJ) $(BENCH_BIN)

bootstrap:
	@deploy/bootstrap.sh

# The one command CI and developers run: installs what is missing, builds, runs every test
# against a private PostgreSQL, and exits non-zero if anything failed.
test: bootstrap
	@$(MAKE) --no-print-directory tests
	@tests/run.sh $(BUILD)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
# The three shell tests of scripts (Liquibase and SQL; the cluster script; make run's script,
# which runs jobqd only to show it serves) would only repeat make test's run here, so they are
# skipped (about 45 s of CI's 10 minutes).
check-asan: bootstrap
	@$(MAKE) --no-print-directory SAN=1 tests
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  JOBQ_TEST_SKIP="integration/test_migrations.sh integration/test_pgctl.sh integration/test_run_dev.sh" \
	  tests/run.sh build-asan

# The fault-injection scenarios (tests/chaos/) with bigger N and longer faults (~15 minutes).
soak: bootstrap
	@$(MAKE) --no-print-directory tests
	@tests/chaos/soak.sh $(BUILD)

run: bootstrap
	@$(MAKE) --no-print-directory all
	@deploy/run-dev.sh $(BUILD)

migrate: bootstrap
	@deploy/migrate.sh update

# Release build only (never SAN=1): figures from a sanitizer build would mean nothing.
bench: bootstrap
	@$(MAKE) --no-print-directory benches
	@tests/bench/run.sh $(BUILD)

# The schema's cost per job in CPU instructions (valgrind), steady on a busy machine: for judging
# a change to a trigger, constraint or statement (tests/bench/sql_profile.sh).
bench-sql: bootstrap
	@tests/bench/sql_profile.sh

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find build build-asan -name '*.d' 2>/dev/null)

# Release check, not part of `make test` (needs root): builds deploy/Dockerfile with buildah, no
# Docker daemon or registry (debian:12-slim made with debootstrap, cached in
# ~/.cache/jobq/image-check) and checks the image: libraries, the entrypoint as the non-root USER,
# no toolchain, /healthz, the deploy/k8s base's settings. IMAGE_CHECK_ARGS="--ref v0.1.0" builds a
# tag instead of the tree.
.PHONY: image-check bench-sql
image-check:
	@deploy/bootstrap.sh image
	@deploy/image-check.sh $(IMAGE_CHECK_ARGS)
