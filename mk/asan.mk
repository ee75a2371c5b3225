# make test-asan: nginx itself and both modules built with clang and
# -fsanitize=address,undefined, then the whole suite run with that binary.
#
# nginx is configured like Debian's (conf_flags of nginx-dev) plus a dynamic
# stream module of its own (the HAProxy agent tests load it instead of
# Debian's uninstrumented one).  Every nginx the harness starts gets
# ASAN_OPTIONS/UBSAN_OPTIONS with log_path=<prefix>/logs/sanitizer (see
# run_cmd in t/lib/NbTest.pm); at teardown the harness fails the test if a
# sanitizer.* report file exists or error.log has a sanitizer line.
#
# Choices: detect_leaks=0 (nginx's master keeps every cycle's pool by design
# and workers exit without freeing them: leak reports would be noise);
# abort_on_error=1, so that a report also kills the worker on SIGABRT and the
# existing "exited on signal" checks see it; UBSan keeps going after a report
# (print_stacktrace=1) so that one run shows all of them, and the report file
# fails the test.  report_globals=0: every dynamic module defines its own
# global "ngx_modules" list, the instrumented .so then poisons the redzone of
# the executable's (interposed) list and nginx's reload reads it: a false
# global-buffer-overflow (the fuzz targets, without dlopen, keep global
# checks).  -fno-sanitize=alignment: nginx reads unaligned words on purpose
# (NGX_HAVE_NONALIGNED).  mk/ubsan.supp lists the UBSan reports in nginx's
# own code that are ignored, each with its reason.

ASAN_CC      ?= clang
ASAN_DIR     := $(BUILD)/asan
ASAN_TREE    := $(ASAN_DIR)/nginx
ASAN_NGINX   := $(ASAN_TREE)/objs/nginx
ASAN_MODULE  := $(ASAN_DIR)/ngx_http_nb_maint_module.so
ASAN_STREAM  := $(ASAN_DIR)/ngx_stream_nb_maint_module.so
ASAN_SCORE   := $(ASAN_DIR)/ngx_stream_module.so
ASAN_SAN     := -fsanitize=address,undefined -fno-sanitize=alignment \
                -fno-omit-frame-pointer
ASAN_CCOPT   := -O1 -g $(ASAN_SAN) -Wno-unused-but-set-variable
ASAN_LDOPT   := $(ASAN_SAN)
ASAN_RUNOPTS := detect_leaks=0:abort_on_error=1:symbolize=1:report_globals=0:detect_odr_violation=0
UBSAN_RUNOPTS := print_stacktrace=1:halt_on_error=0:suppressions=$(CURDIR)/mk/ubsan.supp
ASAN_DEB_PKGS := clang llvm libclang-rt-14-dev dpkg-dev

DEB_PKGS += $(ASAN_DEB_PKGS)

.PHONY: asan-build test-asan

# nginx's C sources: nginx-dev ships only headers and configure, so the
# sources of the same nginx come from Debian's source package (apt-get
# source with a private deb-src list; the system's apt setup is untouched).
# ASAN_NGINX_SRC=<tree with src/core/nginx.c> uses another tree.
ASAN_NGINX_SRC ?= $(if $(wildcard $(NGINX_SRC)/src/core/nginx.c),$(NGINX_SRC))
ASAN_APT       := $(ASAN_DIR)/apt
ASAN_APT_OPTS  := -o Dir::Etc::SourceList=$(CURDIR)/$(ASAN_APT)/sources.list \
                  -o Dir::Etc::SourceParts=/nonexistent \
                  -o Dir::State::Lists=$(CURDIR)/$(ASAN_APT)/lists \
                  -o Dir::Cache=$(CURDIR)/$(ASAN_APT)/cache \
                  -o APT::Sandbox::User=$$(id -un)

$(ASAN_DIR)/src/.unpacked:
	rm -rf $(ASAN_DIR)/src $(ASAN_APT) && \
	  mkdir -p $(ASAN_APT)/lists/partial $(ASAN_APT)/cache/archives/partial \
	    $(ASAN_DIR)/src
	@if [ -n "$(ASAN_NGINX_SRC)" ]; then \
	  cp -a $(ASAN_NGINX_SRC) $(ASAN_DIR)/src/nginx; \
	else \
	  echo "deb-src http://deb.debian.org/debian bookworm main" \
	    > $(ASAN_APT)/sources.list && \
	  v=$$(dpkg-query -W -f='$${Version}' nginx-dev | sed 's/-.*//') && \
	  apt-get -qq $(ASAN_APT_OPTS) update && \
	  cd $(ASAN_DIR)/src && \
	  apt-get -qq $(ASAN_APT_OPTS) source --download-only nginx >/dev/null && \
	  dsc=$$(ls nginx_$$v-*.dsc | tail -1) && \
	  dpkg-source --no-check -x $$dsc nginx >/dev/null && \
	  test -f nginx/src/core/nginx.c; \
	fi
	touch $@

# configure again in place when ./config changes (a new module file), and
# keep the old timestamps of generated headers that did not change, so that
# only the module is rebuilt, not nginx
ASAN_KEEP := ngx_auto_config.h ngx_auto_headers.h ngx_modules.c

$(ASAN_TREE)/objs/Makefile: config $(ASAN_DIR)/src/.unpacked
	[ -d $(ASAN_TREE)/src ] || cp -a $(ASAN_DIR)/src/nginx $(ASAN_TREE)
	rm -rf $(ASAN_DIR)/keep && mkdir -p $(ASAN_DIR)/keep
	for f in $(ASAN_KEEP); do [ ! -f $(ASAN_TREE)/objs/$$f ] \
	  || cp -p $(ASAN_TREE)/objs/$$f $(ASAN_DIR)/keep/; done
	cd $(ASAN_TREE) && flags=(); \
	  if [ -f $(NGINX_SRC)/conf_flags ]; then . $(NGINX_SRC)/conf_flags; \
	    flags=("$${NGX_CONF_FLAGS[@]}"); fi; \
	  NB_MAINT_GEN=$(CURDIR)/$(GEN) ./configure "$${flags[@]}" \
	    --with-cc=$(ASAN_CC) --with-cc-opt="$(ASAN_CCOPT)" \
	    --with-ld-opt="$(ASAN_LDOPT)" \
	    --with-stream=dynamic --with-stream_ssl_module \
	    --with-stream_realip_module --with-stream_ssl_preread_module \
	    --add-dynamic-module=$(CURDIR) > ../configure.log 2>&1 \
	  || { tail -30 ../configure.log; exit 1; }
	for f in $(ASAN_KEEP); do ! cmp -s $(ASAN_DIR)/keep/$$f \
	  $(ASAN_TREE)/objs/$$f || cp -p $(ASAN_DIR)/keep/$$f $(ASAN_TREE)/objs/; \
	done

$(ASAN_NGINX): $(ASAN_TREE)/objs/Makefile $(GEN_HDRS) $(SRCS)
	$(MAKE) -j2 -C $(ASAN_TREE) -f objs/Makefile
	cp $(ASAN_TREE)/objs/ngx_http_nb_maint_module.so $(ASAN_MODULE)
	cp $(ASAN_TREE)/objs/ngx_stream_nb_maint_module.so $(ASAN_STREAM)
	cp $(ASAN_TREE)/objs/ngx_stream_module.so $(ASAN_SCORE)

asan-build: $(ASAN_NGINX)

test-asan: deps asan-build fuzz-build
	NB_SANITIZE=1 ASAN_OPTIONS=$(ASAN_RUNOPTS) UBSAN_OPTIONS=$(UBSAN_RUNOPTS) \
	  NGINX_BIN=$(CURDIR)/$(ASAN_NGINX) \
	  NB_MAINT_MODULE=$(CURDIR)/$(ASAN_MODULE) \
	  NB_MAINT_STREAM_MODULE=$(CURDIR)/$(ASAN_STREAM) \
	  NB_STREAM_CORE=$(CURDIR)/$(ASAN_SCORE) \
	  prove -j2 -r t/
