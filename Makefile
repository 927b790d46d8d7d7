# Weft: one non-recursive Makefile. Objects go to build/, binaries to build/bin/.
# Knobs: DEBUG=1, SANITIZE=address,undefined, WERROR=1, V=1, CC=clang.

CC ?= cc
BUILD ?= build
PKGS := jansson openssl yaml-0.1 libcurl libuv libwebsockets zlib libpcre2-8

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wold-style-definition -Wformat=2 -Wundef -Wpointer-arith -Wwrite-strings -Wvla \
	-Wimplicit-fallthrough -Wnull-dereference
ifeq ($(WERROR),1)
WARN += -Werror
endif

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -I. -Ilib $(WARN)
ifeq ($(DEBUG),1)
CFLAGS_OPT := -O0
else
CFLAGS_OPT := -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong
endif
ifneq ($(SANITIZE),)
CFLAGS_OPT := -O1 -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS_SAN := -fsanitize=$(SANITIZE)
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS := $(CFLAGS_BASE) $(CFLAGS_OPT) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(LDFLAGS_SAN) $(EXTRA_LDFLAGS)
LIBS := $(PKG_LIBS) -lm

ifeq ($(V),1)
Q :=
else
Q := @
endif

# --- sources -----------------------------------------------------------------
CORE_SRC := $(wildcard lib/core/*.c) $(wildcard lib/conf/*.c) $(wildcard lib/tls/*.c) \
	$(wildcard lib/http/*.c)
KL_SRC := $(filter-out tests/kubelite/main.c,$(wildcard tests/kubelite/*.c))
# Weft's own modules (everything but each binary's main.c) go into one archive.
WEFT_DIRS := lib/kube ca webhook controller push agent cli
WEFT_SRC := $(filter-out %/main.c,$(foreach d,$(WEFT_DIRS),$(wildcard $(d)/*.c)))
UNIT_DIRS := $(patsubst %/,%,$(sort $(dir $(wildcard tests/unit/*/*.c))))
UNIT_BINS := $(patsubst tests/unit/%,$(BUILD)/tests/unit-%,$(UNIT_DIRS))
IT_SRC := $(wildcard tests/integration/*.c)
IT_BINS := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(IT_SRC))
E2E_SRC := $(wildcard tests/e2e/*.c)
E2E_BINS := $(patsubst tests/e2e/%.c,$(BUILD)/tests/%,$(E2E_SRC))
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

CORE_LIB := $(BUILD)/lib/libweftcore.a
KL_LIB := $(BUILD)/lib/libkubelite.a
WEFT_LIB := $(BUILD)/lib/libweft.a

KLT_SRC := $(wildcard tests/kubelite/kubelet/*.c)
BINS := $(BUILD)/bin/kubelite $(BUILD)/bin/weftctl $(BUILD)/bin/kubelet-lite $(BUILD)/bin/testapp \
	$(BUILD)/bin/weftd $(BUILD)/bin/weft-init $(BUILD)/bin/weft-agent
UNIT_BINS += $(BUILD)/tests/unit-kubelet

.PHONY: all bins test unit sanitize clean deps check-deps format format-check bench demo \
	fuzz fuzz-long fuzz-runtime
all: bins $(UNIT_BINS) $(IT_BINS) $(E2E_BINS) $(BENCH_BINS)
bins: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(CORE_LIB): $(call obj,$(CORE_SRC))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(KL_LIB): $(call obj,$(KL_SRC))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(WEFT_LIB): $(call obj,$(WEFT_SRC)) $(BUILD)/obj/empty.o
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/empty.o:
	@mkdir -p $(dir $@)
	$(Q)echo 'typedef int weft_empty_unit;' | $(CC) -x c -c - -o $@

$(BUILD)/bin/kubelite: $(call obj,tests/kubelite/main.c) $(KL_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/weftctl: $(call obj,cli/main.c) $(WEFT_LIB) $(KL_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

WEFTD_SRC := $(wildcard weftd/*.c)
$(BUILD)/bin/weftd: $(call obj,$(WEFTD_SRC)) $(WEFT_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# weft-init (image weft/init): the pod's iptables redirection (agent/init/, docs/agent.md).
$(BUILD)/bin/weft-init: $(call obj,agent/init/main.c) $(WEFT_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# weft-agent (image weft/proxy): certificate, HAProxy driver, health on 15020 (docs/agent.md).
$(BUILD)/bin/weft-agent: $(call obj,agent/main.c) $(WEFT_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# kubelet-lite (tests/kubelite/kubelet/) and the test app are test tools of their own.
$(BUILD)/bin/kubelet-lite: $(call obj,$(KLT_SRC)) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/testapp: $(call obj,tests/testapp/testapp.c)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lpthread

$(BUILD)/tests/unit-kubelet: $(call obj,tests/kubelite/kubelet/test/kubelet_test.c $(filter-out %/main.c,$(KLT_SRC))) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# One runner per unit-test directory; it links every library (unused members are dropped).
.SECONDEXPANSION:
$(BUILD)/tests/unit-%: $$(call obj,$$(wildcard tests/unit/%/*.c)) $(WEFT_LIB) $(KL_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: $(call obj,tests/integration/%.c) $(KL_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# the config stream's agent side for t1040 (push/'s client library)
$(BUILD)/tests/streamclient: $(call obj,tests/integration/streamclient.c) $(WEFT_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# e2e helpers (tests/e2e/*.c) use Weft's modules (ca/, agent/).
$(E2E_BINS): $(BUILD)/tests/%: $(BUILD)/obj/tests/e2e/%.o $(WEFT_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(call obj,bench/%.c) $(WEFT_LIB) $(KL_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# --- fuzzing (docs/fuzzing.md) ------------------------------------------------
# libFuzzer targets tests/fuzz/fuzz_*.c, built with clang into $(BUILD)/fuzz/ from objects of
# their own ($(BUILD)/fuzz/obj/: never mixed with the CC objects above). Of lib/http only the
# pure request parser is in the archive (the server needs sockets and OpenSSL).
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := $(CFLAGS_BASE) -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) $(PKG_CFLAGS)
FUZZ_DIRS := lib/core lib/conf lib/tls lib/kube webhook ca push
FUZZ_LIB_SRC := $(filter-out %/main.c,$(foreach d,$(FUZZ_DIRS),$(wildcard $(d)/*.c))) \
	tests/kubelite/patch.c tests/kubelite/openapi.c tests/kubelite/pfproto.c lib/http/parse.c
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_LIB := $(BUILD)/fuzz/libfuzzdeps.a
fuzzobj = $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(1))

fuzz: $(FUZZ_BINS)

# clang without its runtimes (Debian: libclang-rt-14-dev, only recommended by clang) cannot link.
FUZZ_RT = $(shell $(FUZZ_CC) -print-file-name=libclang_rt.fuzzer-$$(uname -m).a 2>/dev/null)
fuzz-runtime:
	$(Q)test -f "$(FUZZ_RT)" || { echo "fuzz: $(FUZZ_CC)'s libFuzzer runtime is missing" \
		"(apt-get install libclang-rt-14-dev; tools/deps.sh)"; exit 1; }

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(call fuzzobj,$(FUZZ_LIB_SRC))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_BINS): $(BUILD)/fuzz/%: $(BUILD)/fuzz/obj/tests/fuzz/%.o $(FUZZ_LIB) | fuzz-runtime
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(LIBS)

# A longer run by hand: make fuzz-long T=fuzz_json S=600 (new inputs go to $(BUILD)/fuzz/corpus/).
fuzz-long: $(FUZZ_BINS)
	$(Q)test -n "$(T)" || { echo "usage: make fuzz-long T=<target> [S=<seconds>]"; exit 2; }
	$(Q)bash tests/fuzz/run.sh --long "$(T)" "$(or $(S),600)"

# --- dependencies, tests -----------------------------------------------------
deps:
	$(Q)bash tools/deps.sh

test: all fuzz
	$(Q)bash tests/run.sh

unit: all
	$(Q)bash tests/run.sh unit

sanitize:
	$(Q)$(MAKE) BUILD=build/san SANITIZE=address,undefined all
	$(Q)BUILD=build/san bash tests/run.sh unit,integration

demo: deps bins
	$(Q)bash tools/demo.sh

bench: all
	$(Q)bash bench/run.sh

check-deps:
	$(Q)bash tools/check-deps.sh

format:
	$(Q)clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	$(Q)clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/fuzz/obj -name '*.d' 2>/dev/null)
