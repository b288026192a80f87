# Service-account gateway: nginx module + sa-admin.
#
#   make          build build/ngx_http_sa_module.so and build/sa-admin
#   make deps     install what is missing (Debian 12, as root)
#   make test     deps + build + the whole suite (prove -r -j t)
#   make demo     deps + build + a local Redis and nginx in front of a sample API
#   make bench    the benchmark (bench/)
#   make deb      the Debian packages (debian/) into build/deb/
#   make test-deb builds them, installs them in a throwaway root, checks them

SHELL     := /bin/bash

NGX_SRC   ?= /usr/share/nginx/src
BUILD     := build
NGX_BUILD := $(BUILD)/nginx

CC        ?= cc
CFLAGS    ?= -O2 -g
CFLAGS    += -std=gnu11 -Wall -Wextra -Werror -Icore
LDLIBS    := -lhiredis -lsodium -ljansson
# sa-admin only (the notification worker's HTTP client, the admin API's
# server, TLS to Redis), not the module
ADMIN_LDLIBS := -lcurl -lmicrohttpd -lssl -lcrypto -lm

# the version's one home is the first line of debian/changelog:
# "sa-gateway (0.3) ..." -> 0.3, for sa-admin --version and the packages
SA_VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)

# Debian packages the build, the tests and the demo need
DEPS := nginx nginx-dev libhiredis-dev libsodium-dev libjansson-dev \
        redis-server redis-tools perl libjson-pp-perl curl wrk make gcc \
        libcurl4-openssl-dev libmicrohttpd-dev libssl-dev gdb

CORE_SRCS  := $(wildcard core/*.c)
CORE_HDRS  := $(wildcard core/*.h)
CORE_OBJS  := $(CORE_SRCS:core/%.c=$(BUILD)/core/%.o)
# admin-tool/: the shared machinery; ops/: the operations; cli/: their
# command line; serve/: the admin API's server (issue 22)
ADMIN_SRCS := $(wildcard admin-tool/*.c admin-tool/ops/*.c admin-tool/cli/*.c \
                         admin-tool/serve/*.c)
ADMIN_HDRS := $(wildcard admin-tool/*.h admin-tool/ops/*.h admin-tool/serve/*.h)
ADMIN_OBJS := $(ADMIN_SRCS:admin-tool/%.c=$(BUILD)/admin/%.o) \
              $(BUILD)/admin/lua_scripts.o $(BUILD)/admin/openapi_json.o
LUA        := $(wildcard admin-tool/lua/*.lua)
UNIT_TESTS := $(patsubst t/unit/%.c,$(BUILD)/tests/%,$(wildcard t/unit/test_*.c))

# the same sa-admin and unit tests with AddressSanitizer and UBSan: 'make test'
# runs the whole suite with this sa-admin, and these unit tests too
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=all
ASAN_CORE  := $(CORE_SRCS:core/%.c=$(BUILD)/asan/core/%.o)
ASAN_ADMIN := $(ADMIN_SRCS:admin-tool/%.c=$(BUILD)/asan/admin/%.o) \
              $(BUILD)/asan/admin/lua_scripts.o $(BUILD)/asan/admin/openapi_json.o
ASAN_UNIT  := $(patsubst t/unit/%.c,$(BUILD)/asan/tests/%,$(wildcard t/unit/test_*.c))
MODULE_SRC := config $(wildcard ngx_sa_module/*) $(CORE_SRCS) $(CORE_HDRS)

.PHONY: all deps module admin unit asan test test-api test-slow test-browser test-valgrind test-nginx-suite demo demo-stop bench clean

all: module admin unit asan

module: $(BUILD)/ngx_http_sa_module.so
admin: $(BUILD)/sa-admin
unit: $(UNIT_TESTS) $(BUILD)/tests/bearer-probe $(BUILD)/tests/refresh-probe \
       $(BUILD)/tests/timewarp.so $(BUILD)/tests/tls-proxy
asan: $(BUILD)/asan/sa-admin $(ASAN_UNIT) $(BUILD)/asan/tests/bearer-probe

deps:
	@missing=""; \
	for p in $(DEPS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing; \
	fi

# nginx's build tree is configured once; its own Makefile rebuilds the module
$(NGX_BUILD)/objs/Makefile: config
	rm -rf $(NGX_BUILD) && mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" $(NGX_CONFIGURE) \
	    --add-dynamic-module=$(CURDIR) \
	    > configure.log 2>&1 || { tail -20 configure.log; exit 1; }

$(BUILD)/ngx_http_sa_module.so: $(NGX_BUILD)/objs/Makefile $(MODULE_SRC)
	$(MAKE) -C $(NGX_BUILD) -f objs/Makefile modules
	cp $(NGX_BUILD)/objs/ngx_http_sa_module.so $@

$(BUILD)/core/%.o: core/%.c $(CORE_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/admin/%.o: admin-tool/%.c $(ADMIN_HDRS) $(CORE_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iadmin-tool -c $< -o $@

LUA_HEADERS := core/sa_keys.h core/sa_record.h

$(BUILD)/admin/lua_scripts.c: $(LUA) admin-tool/lua/embed.pl $(LUA_HEADERS)
	@mkdir -p $(@D)
	perl admin-tool/lua/embed.pl $(LUA_HEADERS:%=--header %) admin-tool/lua \
	    $(LUA) > $@.tmp && mv $@.tmp $@

$(BUILD)/admin/lua_scripts.o: $(BUILD)/admin/lua_scripts.c admin-tool/redis.h
	$(CC) $(CFLAGS) -Iadmin-tool -c $< -o $@

# the admin API's OpenAPI document, served at GET /v1/openapi.json
$(BUILD)/admin/openapi_json.c: schema/openapi.json admin-tool/serve/embed-openapi.pl
	@mkdir -p $(@D)
	perl admin-tool/serve/embed-openapi.pl schema/openapi.json > $@.tmp \
	    && mv $@.tmp $@

$(BUILD)/admin/openapi_json.o: $(BUILD)/admin/openapi_json.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/sa-admin: $(ADMIN_OBJS) $(CORE_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) $(ADMIN_LDLIBS) -o $@

# sa-admin --version
$(BUILD)/admin/main.o $(BUILD)/asan/admin/main.o: debian/changelog
$(BUILD)/admin/main.o $(BUILD)/asan/admin/main.o: \
    override CFLAGS += -DSA_VERSION='"$(SA_VERSION)"'

$(BUILD)/tests/%: t/unit/%.c t/unit/tap.h $(CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -It/unit $< $(CORE_OBJS) $(LDLIBS) -o $@

# unit tests of sa-admin's pure parts (t/unit/test_notify_*.c) and of its
# operations (t/unit/test_ops_*.c) link with sa-admin's objects, all but
# main(), as the fuzz targets do
UNIT_ADMIN := $(filter-out $(BUILD)/admin/main.o,$(ADMIN_OBJS))
ASAN_UNIT_ADMIN := $(filter-out $(BUILD)/asan/admin/main.o,$(ASAN_ADMIN))

$(BUILD)/tests/test_notify_%: t/unit/test_notify_%.c t/unit/tap.h \
                              $(UNIT_ADMIN) $(CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -It/unit -Iadmin-tool $< $(UNIT_ADMIN) $(CORE_OBJS) \
	    $(LDLIBS) $(ADMIN_LDLIBS) -o $@

$(BUILD)/tests/test_ops_%: t/unit/test_ops_%.c t/unit/tap.h \
                           $(UNIT_ADMIN) $(CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -It/unit -Iadmin-tool $< $(UNIT_ADMIN) $(CORE_OBJS) \
	    $(LDLIBS) $(ADMIN_LDLIBS) -o $@

$(BUILD)/tests/test_admin_%: t/unit/test_admin_%.c t/unit/tap.h \
                             $(UNIT_ADMIN) $(CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -It/unit -Iadmin-tool $< $(UNIT_ADMIN) $(CORE_OBJS) \
	    $(LDLIBS) $(ADMIN_LDLIBS) -o $@

# key refresh's run with a version memory kept across runs, as the admin
# API server keeps it (t/admin/91-refresh.t)
$(BUILD)/tests/refresh-probe: t/lib/refresh-probe.c $(UNIT_ADMIN) $(CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iadmin-tool $< $(UNIT_ADMIN) $(CORE_OBJS) \
	    $(LDLIBS) $(ADMIN_LDLIBS) -o $@

# clocks shifted under nginx by LD_PRELOAD (t/module/56-rate-attack.t)
$(BUILD)/tests/timewarp.so: t/lib/timewarp.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -shared -fPIC $< -ldl -o $@

# a TLS server in front of a plain one, misbehaving at the TLS layer on
# command (t/module/98-redis-tls-attacks.t, t/admin/98-redis-tls-attacks.t)
$(BUILD)/tests/tls-proxy: t/lib/tls-proxy.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $< -lssl -lcrypto -o $@

# the admin API's bearer check alone (t/admin/35-bearer.t)
$(BUILD)/tests/bearer-probe: t/lib/bearer-probe.c $(UNIT_ADMIN) $(CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iadmin-tool $< $(UNIT_ADMIN) $(CORE_OBJS) \
	    $(LDLIBS) $(ADMIN_LDLIBS) -o $@

$(BUILD)/asan/core/%.o: core/%.c $(CORE_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -c $< -o $@

$(BUILD)/asan/admin/%.o: admin-tool/%.c $(ADMIN_HDRS) $(CORE_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -Iadmin-tool -c $< -o $@

$(BUILD)/asan/admin/lua_scripts.o: $(BUILD)/admin/lua_scripts.c admin-tool/redis.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -Iadmin-tool -c $< -o $@

$(BUILD)/asan/admin/openapi_json.o: $(BUILD)/admin/openapi_json.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -c $< -o $@

$(BUILD)/asan/sa-admin: $(ASAN_ADMIN) $(ASAN_CORE)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) $^ $(LDLIBS) $(ADMIN_LDLIBS) -o $@

$(BUILD)/asan/tests/%: t/unit/%.c t/unit/tap.h $(ASAN_CORE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -It/unit $< $(ASAN_CORE) $(LDLIBS) -o $@

$(BUILD)/asan/tests/test_notify_%: t/unit/test_notify_%.c t/unit/tap.h \
                                   $(ASAN_UNIT_ADMIN) $(ASAN_CORE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -It/unit -Iadmin-tool $< \
	    $(ASAN_UNIT_ADMIN) $(ASAN_CORE) $(LDLIBS) $(ADMIN_LDLIBS) -o $@

$(BUILD)/asan/tests/test_ops_%: t/unit/test_ops_%.c t/unit/tap.h \
                                $(ASAN_UNIT_ADMIN) $(ASAN_CORE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -It/unit -Iadmin-tool $< \
	    $(ASAN_UNIT_ADMIN) $(ASAN_CORE) $(LDLIBS) $(ADMIN_LDLIBS) -o $@

$(BUILD)/asan/tests/test_admin_%: t/unit/test_admin_%.c t/unit/tap.h \
                                  $(ASAN_UNIT_ADMIN) $(ASAN_CORE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -It/unit -Iadmin-tool $< \
	    $(ASAN_UNIT_ADMIN) $(ASAN_CORE) $(LDLIBS) $(ADMIN_LDLIBS) -o $@

$(BUILD)/asan/tests/bearer-probe: t/lib/bearer-probe.c $(ASAN_UNIT_ADMIN) \
                                  $(ASAN_CORE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -Iadmin-tool $< $(ASAN_UNIT_ADMIN) \
	    $(ASAN_CORE) $(LDLIBS) $(ADMIN_LDLIBS) -o $@

# sa-admin exits from deep inside on errors, leaving memory for the kernel:
# leak reports would be noise there; memory errors and UB still fail tests
# test files run in parallel: each has its own temp dir and ports no other
# file gets (t/README); TEST_JOBS=1 runs them one at a time.  Twice the
# cores: most files mostly wait (for servers, timeouts, time passing), so
# at -j$(nproc) the cores idle about a third of the time
TEST_JOBS ?= $(shell echo $$(( $$(nproc) * 2 )))
# the longest files first, so that none starts near the end and runs on
# alone (prove runs its arguments in order, each file once); the rest of
# t/ follows in its usual order
TEST_FIRST := t/admin/90-resign.t t/module/59-quota-attacks.t \
              t/module/85-network.t t/api/77-records-refresh.t \
              t/module/93-hostile-redis.t t/module/58-rate-cluster.t \
              t/api/20-limits.t t/api/76-refresh.t t/module/69-fresh-until.t \
              t/admin/97-redis-tls.t t/module/30-faults.t t/api/50-faults.t \
              t/module/96-redis-dns.t t/module/92-sentinel.t \
              t/admin/95-sentinel.t t/module/95-redis-tls.t

# the API pass (SA_TEST_API=1, t/lib/SaTest.pm): admin tests again, every
# user's command through a running sa-admin serve (sa-admin --api) instead
# of the signing key; make test runs API_SUBSET of it, make test-api (and
# .ci/run) the whole of t/admin
API_SUBSET := t/admin/10-teams.t t/admin/20-accounts.t t/admin/30-tokens.t \
              t/admin/35-bearer.t t/admin/40-redis.t t/admin/50-atomic.t \
              t/admin/55-conflict.t t/admin/81-notify-worker.t \
              t/admin/39-usage-attacks.t
TEST_ENV := SA_TEST_ADMIN=$(CURDIR)/$(BUILD)/asan/sa-admin \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# make test runs API_SUBSET in the same prove as the rest (so they fill the
# cores while its longest files finish): build/api-pass/NAME.t runs
# t/admin/NAME.t with SA_TEST_API=1
API_PASS := $(API_SUBSET:t/admin/%=$(BUILD)/api-pass/%)
$(BUILD)/api-pass/%.t: t/admin/%.t
	@mkdir -p $(@D)
	@printf '%s\n' '# made by the Makefile: $< in the API pass (API_SUBSET; t/README)' \
	    'BEGIN { $$ENV{SA_TEST_API} = 1; $$0 = "$<" }' \
	    'do "./$<";' 'die $$@ if $$@;' > $@

test: deps
	$(MAKE) all $(API_PASS)
	$(TEST_ENV) prove -r --timer -j$(TEST_JOBS) $(wildcard $(TEST_FIRST)) t $(API_PASS)

test-api: deps
	$(MAKE) all
	$(TEST_ENV) SA_TEST_API=1 prove -j$(TEST_JOBS) t/admin

# the slow suites make test leaves out (SA_TEST_SLOW=1): the Redis stream
# and TLS attack reviews, and seven admin files again with sa-admin over TLS
SLOW_TESTS := t/module/94-redis-stream.t t/module/98-redis-tls-attacks.t \
              t/admin/97-redis-tls.t t/admin/98-redis-tls-attacks.t
# one per core: the TLS suites compute more than they wait
SLOW_JOBS ?= $(shell nproc)
test-slow: deps
	$(MAKE) all
	$(TEST_ENV) SA_TEST_SLOW=1 prove -j$(SLOW_JOBS) $(SLOW_TESTS)

# the console in a real browser (issue 23; t/browser/run.pl): Debian's
# chromium driven by playwright-core, pinned in t/browser/package-lock.json
# (npm ci; Playwright's own browser download is never used), against real
# Redis, sa-admin serve and nginx; screenshots in build/screenshots/
test-browser: deps
	$(MAKE) all
	command -v node >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs; }
	command -v npm >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
	test -x /usr/bin/chromium || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	cd t/browser && npm ci --no-audit --no-fund --loglevel=error
	perl t/browser/run.pl

# the module's tests once with every nginx process under memcheck; slow
# tests may fail on timing there: the verdict is the valgrind report
VALGRIND_DIR := $(CURDIR)/$(BUILD)/valgrind
test-valgrind: deps
	$(MAKE) all
	command -v valgrind >/dev/null || apt-get install -y -qq valgrind
	rm -rf $(VALGRIND_DIR) && mkdir -p $(VALGRIND_DIR)
	-SA_TEST_NGINX_WRAPPER="valgrind --quiet --leak-check=full \
	    --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	    --trace-children=no --log-file=$(VALGRIND_DIR)/vg.%p.log" \
	    prove t/module
	t/lib/valgrind-report $(VALGRIND_DIR)

# nginx's own tests (not packaged: NGINX_TESTS=/path/to/nginx-tests)
test-nginx-suite: deps
	$(MAKE) all
	t/nginx-suite/run

demo: deps
	$(MAKE) all
	./demo/run

demo-stop:
	./demo/stop

bench: deps
	$(MAKE) all
	./bench/run

clean:
	rm -rf $(BUILD)

# Debian packages (debian/): libnginx-mod-http-sa and sa-admin, built by
# dpkg-buildpackage in a copy of the tree (build/deb/sa-gateway-VERSION/, so
# the tree gets no build products; removed after a good build), left in
# build/deb/ with the build log.  The build dependencies are debian/control's
# Build-Depends, installed with apt-get build-dep when missing.
DEB_DIR := $(BUILD)/deb
DEB_SRC := $(DEB_DIR)/sa-gateway-$(SA_VERSION)

.PHONY: deb test-deb

deb:
	@command -v dpkg-checkbuilddeps >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends dpkg-dev; }
	@dpkg-checkbuilddeps 2>/dev/null || { \
	    echo "installing the build dependencies of debian/control"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	        apt-get build-dep -y -qq --no-install-recommends ./; }
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_SRC)
	tar -cf - --exclude=./$(BUILD) --exclude=./.git \
	    --exclude=./t/browser/node_modules . | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc -j$$(nproc) \
	    > ../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
	rm -rf $(DEB_SRC)
	@ls -1 $(DEB_DIR)/*.deb

# installs both packages with dpkg -i in a throwaway copy-on-write root
# (t/deb/run) and checks them there; slow, not part of 'make test'
test-deb: deb
	t/deb/run $(DEB_DIR)

# libFuzzer targets (fuzz/fuzz_*.c, see fuzz/README.md); not part of 'make test'.
#   make fuzz [FUZZ_SECONDS=30] [FUZZ_TARGETS="fuzz_url fuzz_scope"] [FUZZ_ARGS=...]
# Each target runs on a copy of its corpus in build/fuzz/corpus/ (the tree's
# fuzz/corpus/ is never written); crashing inputs land in build/fuzz/artifacts/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -Icore -Iadmin-tool
# sa-admin's sources, all but main(): redis.c and util.c need the rest
FUZZ_LIBSRCS := $(CORE_SRCS) $(filter-out admin-tool/main.c,$(ADMIN_SRCS)) \
                $(BUILD)/admin/lua_scripts.c $(BUILD)/admin/openapi_json.c
FUZZ_ALL     := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_TARGETS ?= $(FUZZ_ALL)

.PHONY: fuzz fuzz-build fuzz-deps

fuzz-deps: deps
	@dpkg-query -W -f='$${Status}' libclang-rt-14-dev 2>/dev/null \
	    | grep -q 'ok installed' || \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang \
	        libclang-rt-14-dev

fuzz-build: fuzz-deps $(FUZZ_ALL:%=$(BUILD)/fuzz/%)

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_LIBSRCS) $(CORE_HDRS) \
                      $(ADMIN_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(FUZZ_LIBSRCS) $(LDLIBS) $(ADMIN_LDLIBS) -o $@

fuzz: fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	    corpus=$(BUILD)/fuzz/corpus/$$t; log=$(BUILD)/fuzz/$$t.log; \
	    mkdir -p $$corpus $(BUILD)/fuzz/artifacts; \
	    cp fuzz/corpus/$$t/* $$corpus/ 2>/dev/null; \
	    dict=; [ -f fuzz/$$t.dict ] && dict=-dict=fuzz/$$t.dict; \
	    echo "fuzz: $$t for $(FUZZ_SECONDS)s (log: $$log)"; \
	    if UBSAN_OPTIONS=print_stacktrace=1 $(BUILD)/fuzz/$$t \
	        -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/fuzz/artifacts/$$t- $$dict $(FUZZ_ARGS) \
	        $$corpus > $$log 2>&1; \
	    then \
	        grep -a -E '^#[0-9]+[[:space:]]+DONE|number_of_executed_units' $$log \
	            | sed 's/^/    /'; \
	    else \
	        failed="$$failed $$t"; \
	        grep -a -m1 -B3 -A25 -E '==ERROR|invariant failed|runtime error' \
	            $$log; grep -a 'Test unit written' $$log; \
	    fi; \
	done; \
	if [ -n "$$failed" ]; then \
	    echo "fuzz: FAILED:$$failed (inputs in $(BUILD)/fuzz/artifacts/)"; \
	    exit 1; \
	fi
