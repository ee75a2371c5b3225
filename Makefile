# nb_maint — build, test, demo
NGINX_SRC  ?= /usr/share/nginx/src
NGINX_BIN  ?= nginx
BUILD      := build
NGX_TREE   := $(BUILD)/nginx
GEN        := $(BUILD)/gen
MODULE_SO  := $(BUILD)/ngx_http_nb_maint_module.so
STREAM_SO  := $(BUILD)/ngx_stream_nb_maint_module.so
SRCS       := $(wildcard ngx_nb_maint_module/*.c ngx_nb_maint_module/*.h)
# gdb: t/128 makes a worker take the write mutex before it is killed;
# prometheus: promtool, t/060 checks GET metrics with it;
# strace: t/129 sees the file store fsync the state file's directory
# libyaml-libyaml-perl: YAML::XS, t/187 reads deploy/ (Compose, Kubernetes)
DEB_PKGS   := nginx nginx-dev libnginx-mod-stream libhiredis-dev libcjson-dev \
              libpcre2-dev libssl-dev zlib1g-dev redis-server redis-sentinel haproxy wrk curl \
              perl gcc make chromium openssl \
              debhelper dpkg-dev lintian gdb prometheus strace libyaml-libyaml-perl

SHELL := /bin/bash

# NGINX_VERSION=x.y.z: another nginx from ../shared/nginx-src (mk/versions.mk)
include mk/versions.mk
# make deb, make install (mk/deb.mk)
include mk/deb.mk
# make image: the gateway as a container image (mk/image.mk)
include mk/image.mk

.PHONY: all deps deps-browser build test demo bench install clean test-nocobase bench-ws bench-redis screenshots

all: build

build: $(MODULE_SO) $(STREAM_SO)

# Installs every build and test dependency from Debian packages; quick when present.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "deps: all present"; fi
	@# the Debian package enables and starts system services; tests run their own
	@if [ -d /run/systemd/system ]; then true; fi
	@$(MAKE) -s deps-browser

# playwright-core (no browser download: it drives Debian's chromium) for the
# browser tests, from t/browser/package-lock.json; node/npm from Debian if absent
deps-browser:
	@command -v npm >/dev/null || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	@if [ -f t/browser/node_modules/.package-lock.json ] && \
	    cmp -s t/browser/package-lock.json t/browser/node_modules/.nb-lock; then \
	  echo "deps: playwright-core present"; \
	else echo "deps: npm ci in t/browser"; \
	  cd t/browser && npm ci --no-audit --no-fund --loglevel=error && \
	  cp package-lock.json node_modules/.nb-lock; fi

# static/*.html become C headers: static/page.html -> ngx_http_nb_maint_page_html.h
$(GEN)/ngx_http_nb_maint_%_html.h: static/%.html scripts/embed
	@mkdir -p $(GEN)
	perl scripts/embed ngx_http_nb_maint_$*_html $< > $@.tmp && mv $@.tmp $@

ifeq ($(NGINX_VERSION),)
$(NGX_TREE)/objs/Makefile: config
	rm -rf $(NGX_TREE) && mkdir -p $(BUILD) && cp -a $(NGINX_SRC) $(NGX_TREE)
	cd $(NGX_TREE) && flags=(--with-compat); \
	  if [ -f conf_flags ]; then . ./conf_flags; flags=("$${NGX_CONF_FLAGS[@]}"); fi; \
	  NB_MAINT_GEN=$(CURDIR)/$(GEN) ./configure "$${flags[@]}" --with-cc-opt="-O2 -g" --with-stream=dynamic \
	    --add-dynamic-module=$(CURDIR) > ../configure.log 2>&1 \
	  || { tail -30 ../configure.log; exit 1; }
endif

GEN_HDRS   := $(GEN)/ngx_http_nb_maint_page_html.h \
              $(GEN)/ngx_http_nb_maint_dashboard_html.h

$(MODULE_SO): $(NGX_TREE)/objs/Makefile $(GEN_HDRS) $(SRCS)
	$(MAKE) -C $(NGX_TREE) -f objs/Makefile objs/ngx_http_nb_maint_module.so \
	    objs/ngx_stream_nb_maint_module.so
	rm -f $@ && cp $(NGX_TREE)/objs/ngx_http_nb_maint_module.so $@
	rm -f $(STREAM_SO) && cp $(NGX_TREE)/objs/ngx_stream_nb_maint_module.so $(STREAM_SO)

$(STREAM_SO): $(MODULE_SO)

test: deps build
	NGINX_BIN=$(NGINX_BIN) NB_MAINT_MODULE=$(CURDIR)/$(MODULE_SO) prove -j2 -r t/

# Opt-in, slow: a real NocoBase from the npm registry (cached in
# build/nocobase/) and PostgreSQL from Debian behind the gateway, its web
# client in headless Chromium (t/235); screenshots in build/nocobase/shots/
test-nocobase: deps build
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
	scripts/nocobase-install
	NB_NOCOBASE_E2E=1 NGINX_BIN=$(NGINX_BIN) NB_MAINT_MODULE=$(CURDIR)/$(MODULE_SO) \
	  prove -v t/235.nocobase_e2e.t

# doc/dashboard.png (1280 px) and doc/dashboard-390.png, shown in README
screenshots: deps build
	NB_DOC_SHOTS=$(CURDIR)/doc NGINX_BIN=$(NGINX_BIN) NB_MAINT_MODULE=$(CURDIR)/$(MODULE_SO) \
	  prove -v t/234.dashboard_shots.t

demo: deps build
	perl scripts/demo

bench: deps build
	scripts/bench
	scripts/bench-redis

# Redis store: Sentinel failover (5 kills), propagation after it, fan-out to
# 1/10/50 gateways (about 3 minutes)
bench-redis: deps build
	scripts/bench-redis

# 5,000 idle gated WebSockets against one worker (a few minutes)
bench-ws: deps build
	scripts/bench-ws

clean:
	rm -rf $(BUILD)

# sanitizer build and suite (make test-asan), fuzzing (make fuzz)
include mk/asan.mk
include mk/fuzz.mk
