# pgo-fleet build.
#
#   make            build/pgof-collector, build/pgof, build/libpgof.{a,so}
#   make run        build and start a development collector on 127.0.0.1:8080
#   make test       unit tests (plain and ASan+UBSan), integration tests, short fuzz
#   make install    libpgof, its header and pgof.pc under PREFIX (DESTDIR honoured)
#   make fuzz       run the fuzz targets for FUZZ_SECONDS each
#   make bench      every benchmark (docs/performance.md); bench-engine,
#                   bench-collector, bench-embedded run one part each
#   make stress     the long stress run with a ledger (STRESS_SECONDS, default 180)
#   make memcheck   the collector under valgrind through a short workload
#   make proto      regenerate src/pprof/gen from proto/ with nanopb's generator
#   make setup      install missing Debian packages (as root) or print the apt-get line
#   make docker-rootfs-check  run the image's runtime stage in a debootstrapped root
#
# SANITIZER=address|undefined|thread builds into build/<sanitizer>/ instead.
# The effective flags are recorded in $(BUILD)/.flags so changing them rebuilds.

CC      ?= cc
CLANG   ?= clang
PYTHON  := /usr/bin/python3

OPT     ?= -O2
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wstrict-prototypes -Wshadow -Wvla
CFLAGS  ?= $(OPT) -g
BASE_CFLAGS := $(CSTD) -fno-omit-frame-pointer -pthread -MMD -MP
INCLUDES := -Isrc -Isrc/pprof/gen -Ivendor/nanopb -Ivendor/llhttp -Ivendor/libdeflate
# nanopb: 32-bit field sizes, so a submessage larger than 64 KiB still decodes.
NANOPB_DEFS := -DPB_FIELD_32BIT
VENDOR_WARN := -w

BUILD := build
ifeq ($(SANITIZER),address)
  BUILD := build/asan
  SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
else ifeq ($(SANITIZER),undefined)
  BUILD := build/ubsan
  SAN_FLAGS := -fsanitize=undefined -fno-sanitize-recover=all
else ifeq ($(SANITIZER),thread)
  BUILD := build/tsan
  SAN_FLAGS := -fsanitize=thread
endif

ALL_CFLAGS := $(BASE_CFLAGS) $(CFLAGS) $(SAN_FLAGS) $(INCLUDES) $(NANOPB_DEFS)
LDFLAGS ?=
ALL_LDFLAGS := -pthread $(SAN_FLAGS) $(LDFLAGS)

# ---- sources, by module -------------------------------------------------
NANOPB_SRCS := vendor/nanopb/pb_common.c vendor/nanopb/pb_decode.c vendor/nanopb/pb_encode.c
# libdeflate's decompressor and CRC-32, patched (vendor/libdeflate/VENDOR.md).
LIBDEFLATE_SRCS := $(addprefix vendor/libdeflate/lib/,deflate_decompress.c gzip_decompress.c \
	crc32.c utils.c x86/cpu_features.c arm/cpu_features.c)
LLHTTP_SRCS := vendor/llhttp/api.c vendor/llhttp/http.c vendor/llhttp/llhttp.c
PPROF_SRCS  := $(sort $(wildcard src/pprof/*.c) src/pprof/gen/profile.pb.c)
COMMON_SRCS := $(wildcard src/common/*.c)
COLLECTOR_SRCS := $(filter-out src/collector/main.c,$(wildcard src/collector/*.c))
CLI_SRCS    := $(filter-out src/cli/main.c,$(wildcard src/cli/*.c))
EMBEDDED_SRCS := $(wildcard src/embedded/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBPPROF     := $(BUILD)/libpprof_engine.a
LIBCOLLECTOR := $(BUILD)/libcollector.a
COLLECTOR    := $(BUILD)/pgof-collector
CLI          := $(BUILD)/pgof

LIBS_PPROF     := -lz -lm
LIBS_COLLECTOR := -luv -lz -lm
LIBS_CLI       := -lcurl -lz -lm

TARGETS := $(COLLECTOR)
ifneq ($(wildcard src/cli/main.c),)
  TARGETS += $(CLI)
endif
ifneq ($(EMBEDDED_SRCS),)
  TARGETS += $(BUILD)/libpgof.a $(BUILD)/libpgof.so
endif

.PHONY: all run test unit integration fuzz proto setup setup-test clean bench stress memcheck
all: $(TARGETS)

# ---- flags record --------------------------------------------------------
FLAGS_LINE := $(CC) $(ALL_CFLAGS) | $(ALL_LDFLAGS)
$(BUILD)/.flags: FORCE
	@mkdir -p $(@D)
	@if [ "$$(cat $@ 2>/dev/null)" != '$(FLAGS_LINE)' ]; then echo '$(FLAGS_LINE)' > $@; fi
.PHONY: FORCE
FORCE:

# ---- compile ---------------------------------------------------------------
$(BUILD)/obj/vendor/%.o: vendor/%.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(VENDOR_WARN) -c $< -o $@

$(BUILD)/obj/src/pprof/gen/%.o: src/pprof/gen/%.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -c $< -o $@

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- libraries and programs -------------------------------------------------
$(LIBPPROF): $(call obj,$(PPROF_SRCS) $(NANOPB_SRCS) $(LIBDEFLATE_SRCS) $(COMMON_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(LIBCOLLECTOR): $(call obj,$(COLLECTOR_SRCS) $(LLHTTP_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(COLLECTOR): $(call obj,src/collector/main.c) $(LIBCOLLECTOR) $(LIBPPROF)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS_COLLECTOR)

$(CLI): $(call obj,src/cli/main.c $(CLI_SRCS)) $(LIBPPROF)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS_CLI)

# ---- libpgof: the embedded profiler (src/embedded, docs/embedding.md) -------
# libpgof.a and libpgof.so carry the pprof engine objects they need; every
# symbol but pgof_* is made local (objcopy for the .a, a version script for
# the .so) so a host using nanopb or its own pprof code does not clash. The
# .so is built from a separate -fPIC object set under $(BUILD)/pic/.
# elfutils' libdw (file:line, static symbols, inlined frames) is optional:
# probed here, compiled in with -DPGOF_HAVE_LIBDW when present.
HAVE_LIBDW := $(shell printf '\043include <elfutils/libdwfl.h>\nint main(void){return dwfl_begin(0)!=0;}\n' | \
	$(CC) -x c - -ldw -o /dev/null 2>/dev/null && echo 1)
EMBEDDED_DEFS := $(if $(HAVE_LIBDW),-DPGOF_HAVE_LIBDW)
LIBS_EMBEDDED := -lcurl $(if $(HAVE_LIBDW),-ldw) -lz -lm
LIBPGOF_A   := $(BUILD)/libpgof.a
LIBPGOF_SO  := $(BUILD)/libpgof.so
PGOF_LIBSRCS := $(EMBEDDED_SRCS) $(PPROF_SRCS) $(NANOPB_SRCS) $(LIBDEFLATE_SRCS) $(COMMON_SRCS)
pic = $(patsubst %.c,$(BUILD)/pic/%.o,$(1))

$(BUILD)/obj/src/embedded/%.o: src/embedded/%.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) $(EMBEDDED_DEFS) -c $< -o $@
$(BUILD)/pic/src/embedded/%.o: src/embedded/%.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) $(EMBEDDED_DEFS) -fPIC -c $< -o $@
$(BUILD)/pic/vendor/%.o: vendor/%.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(VENDOR_WARN) -fPIC -c $< -o $@
$(BUILD)/pic/src/pprof/gen/%.o: src/pprof/gen/%.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@
$(BUILD)/pic/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -fPIC -c $< -o $@
-include $(shell find $(BUILD)/pic -name '*.d' 2>/dev/null)

$(LIBPGOF_A): $(call obj,$(PGOF_LIBSRCS))
	@rm -f $@ $(BUILD)/obj/libpgof-all.o
	$(CC) -r -nostdlib -o $(BUILD)/obj/libpgof-all.o $^
	objcopy --wildcard --keep-global-symbol='pgof_[a-z]*' $(BUILD)/obj/libpgof-all.o
	ar rcs $@ $(BUILD)/obj/libpgof-all.o

$(LIBPGOF_SO): $(call pic,$(PGOF_LIBSRCS)) src/embedded/libpgof.map
	$(CC) -shared $(ALL_LDFLAGS) -Wl,-soname,libpgof.so.$(PGOF_SOMAJOR) \
	  -Wl,--version-script=src/embedded/libpgof.map -Wl,-z,defs \
	  -o $@ $(filter %.o,$^) $(LIBS_EMBEDDED)
	ln -sf libpgof.so $(BUILD)/libpgof.so.$(PGOF_SOMAJOR)

# Test programs for test/embedded/*.py (not test_*: the runner would take
# them for cmocka binaries). pgof-e2e links the shared library.
EMBEDDED_PROG_SRCS := $(wildcard test/embedded/progs/*.c)
EMBEDDED_PROGS := $(patsubst test/embedded/progs/%.c,$(BUILD)/embedded/%,$(EMBEDDED_PROG_SRCS))
$(BUILD)/embedded/pgof-e2e: test/embedded/progs/pgof-e2e.c $(LIBPGOF_SO) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) $< -o $@ $(ALL_LDFLAGS) -L$(BUILD) -Wl,-rpath,'$$ORIGIN/..' -lpgof
$(BUILD)/embedded/%: test/embedded/progs/%.c $(LIBPGOF_A) $(LIBPPROF) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) $< -o $@ $(ALL_LDFLAGS) $(LIBPGOF_A) $(LIBPPROF) $(LIBS_EMBEDDED)

$(BUILD)/test/embedded/%: test/embedded/%.c $(LIBPGOF_A) $(LIBPPROF) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) $(EMBEDDED_DEFS) -Wno-unused-function -Itest $< -o $@ $(ALL_LDFLAGS) $(LIBPGOF_A) $(LIBPPROF) -lcmocka $(LIBS_EMBEDDED)

# Overhead at 100 Hz (long; not in make test): see docs/performance.md.
bench-embedded: $(EMBEDDED_PROGS)
	test/bench/embedded_overhead.sh
.PHONY: bench-embedded

# make install [PREFIX=/usr/local] [DESTDIR=...]: libpgof, pgof.h, pgof.pc.
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PGOF_SOMAJOR := 0
PGOF_VERSION_STR := $(shell sed -n 's/^\#define PGOF_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)/\2/p' src/embedded/pgof.h | paste -sd.)
install: $(LIBPGOF_A) $(LIBPGOF_SO)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 644 $(LIBPGOF_A) $(DESTDIR)$(LIBDIR)/libpgof.a
	install -m 755 $(LIBPGOF_SO) $(DESTDIR)$(LIBDIR)/libpgof.so.$(PGOF_VERSION_STR)
	ln -sf libpgof.so.$(PGOF_VERSION_STR) $(DESTDIR)$(LIBDIR)/libpgof.so.$(PGOF_SOMAJOR)
	ln -sf libpgof.so.$(PGOF_SOMAJOR) $(DESTDIR)$(LIBDIR)/libpgof.so
	install -m 644 src/embedded/pgof.h $(DESTDIR)$(INCLUDEDIR)/pgof.h
	printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: pgof\nDescription: %s\nVersion: %s\nLibs: -L$${libdir} -lpgof\nLibs.private: %s -pthread\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(LIBDIR)' '$(INCLUDEDIR)' 'pgo-fleet embedded CPU profiler' '$(PGOF_VERSION_STR)' \
	  '$(LIBS_EMBEDDED)' > $(DESTDIR)$(LIBDIR)/pkgconfig/pgof.pc
.PHONY: install

# ---- unit tests ------------------------------------------------------------
# test/<module>/test_*.c each become one cmocka binary linked with the
# module's library. A test may #include the .c under test to reach statics;
# it then must not also link that object, so tests link libraries (archives
# only pull the objects not already defined).
UNIT_SRCS := $(sort $(wildcard test/*/test_*.c))
UNIT_BINS := $(patsubst test/%.c,$(BUILD)/test/%,$(UNIT_SRCS))

$(BUILD)/test/pprof/%: test/pprof/%.c $(LIBPPROF) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -Wno-unused-function -Itest $< -o $@ $(ALL_LDFLAGS) $(LIBPPROF) -lcmocka $(LIBS_PPROF)

$(BUILD)/test/collector/%: test/collector/%.c $(LIBCOLLECTOR) $(LIBPPROF) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -Wno-unused-function -Itest $< -o $@ $(ALL_LDFLAGS) $(LIBCOLLECTOR) $(LIBPPROF) -lcmocka $(LIBS_COLLECTOR)

$(BUILD)/test/common/%: test/common/%.c $(LIBPPROF) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -Itest $< -o $@ $(ALL_LDFLAGS) $(LIBPPROF) -lcmocka $(LIBS_PPROF)

$(BUILD)/test/cli/%: test/cli/%.c $(LIBPPROF) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -Wno-unused-function -Itest $< -o $@ $(ALL_LDFLAGS) $(LIBPPROF) -lcmocka $(LIBS_CLI)

# pprof-dump: the engine's command-line driver for the cross-check tests
# (test/pprof/test_crosscheck.py) and the engine benchmark.
PPROF_DUMP := $(BUILD)/pprof-dump
$(PPROF_DUMP): $(wildcard test/pprof/tools/*.c) $(LIBPPROF) $(BUILD)/.flags
	$(CC) $(ALL_CFLAGS) $(WARN) $(filter %.c,$^) -o $@ $(ALL_LDFLAGS) $(LIBPPROF) $(LIBS_PPROF)

unit-build: $(UNIT_BINS) $(PPROF_DUMP)
unit-build: $(EMBEDDED_PROGS)
.PHONY: unit-build

# The pprof engine vs `go tool pprof -proto` on 1,000 real profiles (long; not in make test).
bench-engine: $(LIBPPROF) $(PPROF_DUMP)
	test/bench/merge_engine.sh
.PHONY: bench-engine

# The collector against its peers (issue 9, docs/performance.md): submit
# throughput, merge latency, start-up, loop responsiveness, memory, offline
# merge. Loopback only, about 5 minutes once the profiles are cached in
# build/bench/ (the first run generates them). BENCH_ARGS passes options,
# e.g. BENCH_ARGS='--sections submit --runs 3'.
BENCH_ARGS ?=
bench: setup-bench all $(PPROF_DUMP)
	$(PYTHON) test/bench/collector.py $(BENCH_ARGS)
	test/bench/merge_engine.sh
bench-collector: setup-bench all $(PPROF_DUMP)
	$(PYTHON) test/bench/collector.py $(BENCH_ARGS)
.PHONY: bench-collector

# ---- fuzzing ---------------------------------------------------------------
FUZZ_SRCS := $(wildcard test/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst test/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_CFLAGS := $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	$(INCLUDES) $(NANOPB_DEFS) -pthread
FUZZ_SECONDS ?= 300

build/fuzz/fuzz_pprof: test/fuzz/fuzz_pprof.c $(PPROF_SRCS) $(NANOPB_SRCS) $(LIBDEFLATE_SRCS) $(COMMON_SRCS)
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $^ -lz -lm

build/fuzz/fuzz_http: test/fuzz/fuzz_http.c $(COLLECTOR_SRCS) $(LLHTTP_SRCS) $(PPROF_SRCS) $(NANOPB_SRCS) $(LIBDEFLATE_SRCS) $(COMMON_SRCS)
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $^ -luv -lz -lm

build/fuzz/fuzz_inflate: test/fuzz/fuzz_inflate.c $(LIBDEFLATE_SRCS)
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $^ -lz

fuzz-build: $(FUZZ_BINS)
.PHONY: fuzz-build

fuzz: setup-test fuzz-build
	$(PYTHON) test/run.py --fuzz-only --fuzz-seconds $(FUZZ_SECONDS)

# ---- reliability (issue 5, docs/reliability.md) ---------------------------
# stress: the long stress run with its ledger (the short one is in make
# test); memcheck: the plain collector under valgrind through a short
# workload (valgrind and ASan do not mix, so always build/pgof-collector).
STRESS_SECONDS ?= 180
STRESS_CLIENTS ?= 48
stress: setup-test
	@$(MAKE) --no-print-directory all
	$(PYTHON) test/stress/stress.py --seconds $(STRESS_SECONDS) --clients $(STRESS_CLIENTS)

memcheck: setup-test
	@$(MAKE) --no-print-directory SANITIZER= all
	$(PYTHON) test/reliability/memcheck.py build/pgof-collector

# ---- top-level workflows --------------------------------------------------
# A development collector: keys under ./dev/ (made once, never overwritten),
# profiles in ./profiles. exec hands Ctrl-C straight to the collector.
DEV_DIR := dev
run: setup all
	@mkdir -p $(DEV_DIR) && chmod 700 $(DEV_DIR)
	@for k in submit merge; do f=$(DEV_DIR)/$${k}_keys; \
	  if [ ! -s $$f ]; then (umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > $$f; echo >> $$f); \
	    echo "run: wrote a new $$k key to $$f"; fi; \
	  echo "run: $$k key ($$f): $$(cat $$f)"; done
	@PGOF_BIND_ADDRESS=$${PGOF_BIND_ADDRESS:-127.0.0.1:8080} PGOF_DIRECTORY=$${PGOF_DIRECTORY:-./profiles} \
	  PGOF_SUBMIT_AUTH_KEYS_FILE=$(DEV_DIR)/submit_keys PGOF_MERGE_AUTH_KEYS_FILE=$(DEV_DIR)/merge_keys \
	  exec $(COLLECTOR)

test: setup-test
	@$(MAKE) --no-print-directory all unit-build
	@$(MAKE) --no-print-directory SANITIZER=address all unit-build
	@$(MAKE) --no-print-directory fuzz-build
	@$(PYTHON) test/run.py

proto:
	cd proto && nanopb_generator.py -q -D ../src/pprof/gen -f profile.options profile.proto

# ---- set-up: Debian packages ---------------------------------------------
BUILD_PKGS := gcc make libc6-dev libuv1-dev zlib1g-dev libcurl4-openssl-dev libdw-dev
TEST_PKGS  := libcmocka-dev python3 python3-pytest golang-go clang libclang-rt-14-dev \
	nginx-light curl python3-yaml systemd

define install_pkgs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "setup: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else \
	    echo "setup: missing Debian packages; run: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi
endef

setup:
	$(call install_pkgs,$(BUILD_PKGS))

setup-test: setup setup-go123
	$(call install_pkgs,$(TEST_PKGS))

# Go 1.23 for the PGO tests (test/pgo): PGO needs Go 1.21+, bookworm's
# golang-go is 1.19. Installed from bookworm-backports through a temporary
# sources list, without touching the machine's apt configuration; without
# root or network the PGO tests skip and say why.
setup-go123:
	@sh test/pgo/setup-go123.sh
.PHONY: setup-go123

# make bench: load generator, timers, the Go reference server's google/pprof.
BENCH_PKGS := wrk hyperfine time golang-go golang-github-google-pprof-dev
setup-bench: setup
	$(call install_pkgs,$(BENCH_PKGS))
.PHONY: setup-bench

# ---- deployment ------------------------------------------------------------
# The container image's runtime stage rebuilt in a debootstrapped bookworm
# root, then the binaries run there as the image's user (see
# test/deploy/rootfs_check.py). Needs root and the Debian archive; minutes
# the first time, so it is not part of `make test`.
docker-rootfs-check: all
	$(call install_pkgs,debootstrap)
	@$(PYTHON) test/deploy/rootfs_check.py
.PHONY: docker-rootfs-check

clean:
	rm -rf build
