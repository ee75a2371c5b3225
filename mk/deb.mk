# nb_maint — Debian packages and make install (issue 11)
#
#   make deb       build/libnginx-mod-http-nb-maint_<v>_<arch>.deb and
#                  build/libnginx-mod-stream-nb-maint_<v>_<arch>.deb, built by
#                  dpkg-buildpackage from debian/ against Debian's nginx-dev,
#                  then checked by lintian (errors fail the build)
#   make install   the same files without a package (DESTDIR, PREFIX for the
#                  CLI and man pages)

DEB_VERSION := $(shell dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null)
DEB_HTTP    := $(BUILD)/libnginx-mod-http-nb-maint_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_STREAM  := $(BUILD)/libnginx-mod-stream-nb-maint_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_TREE    := $(BUILD)/deb/nb-maint-$(DEB_VERSION)
DEB_INPUTS  := config $(wildcard ngx_nb_maint_module/*) $(wildcard debian/* debian/*/*) \
               $(wildcard static/*.html static/nginx/* static/haproxy/* static/grafana/*) \
               scripts/nb-maint $(wildcard scripts/lib/*.pm scripts/lib/NbMaint/*.pm) scripts/embed \
               $(wildcard doc/man/*.pod) README.md

.PHONY: deb install install-cli

deb: $(DEB_HTTP)

$(DEB_STREAM): $(DEB_HTTP)

# dpkg-buildpackage writes next to the source tree: build it in a copy
$(DEB_HTTP): $(DEB_INPUTS)
	rm -rf $(BUILD)/deb && mkdir -p $(DEB_TREE)
	tar -cf - config ngx_nb_maint_module debian static scripts/nb-maint scripts/lib \
	    scripts/embed doc/man README.md | tar -xf - -C $(DEB_TREE)
	cd $(DEB_TREE) && dpkg-buildpackage -b -us -uc -j2 > ../build.log 2>&1 \
	  || { tail -40 ../build.log; exit 1; }
	lintian --fail-on error $(BUILD)/deb/*.changes | tee $(BUILD)/deb/lintian.log
	cp $(BUILD)/deb/libnginx-mod-*-nb-maint_*.deb $(BUILD)/

PREFIX     ?= /usr/local
MODDIR     := /usr/lib/nginx/modules
MODAVAIL   := /usr/share/nginx/modules-available
MODENABLED := /etc/nginx/modules-enabled

# the CLI alone (no build needed): the entry point and its modules, found
# from it as ../share/nb-maint/perl
install-cli:
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/nb-maint/perl/NbMaint
	install -m 0755 scripts/nb-maint $(DESTDIR)$(PREFIX)/bin/nb-maint
	install -m 0644 scripts/lib/NbMaint.pm $(DESTDIR)$(PREFIX)/share/nb-maint/perl/
	install -m 0644 scripts/lib/NbMaint/*.pm $(DESTDIR)$(PREFIX)/share/nb-maint/perl/NbMaint/

install: build install-cli
	install -d $(DESTDIR)$(MODDIR) $(DESTDIR)$(MODAVAIL) $(DESTDIR)/etc/nginx/nb_maint \
	    $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/usr/share/nb-maint/haproxy \
	    $(DESTDIR)/usr/share/nb-maint/grafana \
	    $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0644 $(MODULE_SO) $(STREAM_SO) $(DESTDIR)$(MODDIR)/
	echo 'load_module modules/ngx_http_nb_maint_module.so;' \
	    > $(DESTDIR)$(MODAVAIL)/mod-http-nb-maint.conf
	echo 'load_module modules/ngx_stream_nb_maint_module.so;' \
	    > $(DESTDIR)$(MODAVAIL)/mod-stream-nb-maint.conf
	@# the snippets are configuration: never overwrite an admin's edits
	for f in static/nginx/*.conf; do \
	  t=$(DESTDIR)/etc/nginx/nb_maint/$$(basename $$f); \
	  if [ -e $$t ]; then install -m 0644 $$f $$t.dist; else install -m 0644 $$f $$t; fi; \
	done
	install -m 0644 static/page.html $(DESTDIR)/usr/share/nb-maint/page.html
	install -m 0644 static/haproxy/nb_maint.cfg $(DESTDIR)/usr/share/nb-maint/haproxy/
	install -m 0644 static/grafana/nb_maint.json $(DESTDIR)/usr/share/nb-maint/grafana/
	pod2man --section=1 --center=nb_maint doc/man/nb-maint.pod \
	    > $(DESTDIR)$(PREFIX)/share/man/man1/nb-maint.1
	pod2man --section=5 --center=nb_maint doc/man/nb_maint.pod \
	    > $(DESTDIR)$(PREFIX)/share/man/man5/nb_maint.5
	install -d -m 0750 $(DESTDIR)/var/lib/nb-maint
	-chown www-data:www-data $(DESTDIR)/var/lib/nb-maint
	@if [ ! -e $(DESTDIR)/etc/nginx/nb_maint/tokens ]; then (umask 077; \
	  printf 'admin:%s\n' "$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" \
	    > $(DESTDIR)/etc/nginx/nb_maint/tokens); \
	  echo "install: admin token written to /etc/nginx/nb_maint/tokens"; fi
	@# enabled as the package does it (50: after nothing; 70: after the stream core)
	if [ -d $(DESTDIR)$(MODENABLED) ]; then \
	  ln -sf $(MODAVAIL)/mod-http-nb-maint.conf $(DESTDIR)$(MODENABLED)/50-mod-http-nb-maint.conf; \
	  ln -sf $(MODAVAIL)/mod-stream-nb-maint.conf $(DESTDIR)$(MODENABLED)/70-mod-stream-nb-maint.conf; \
	fi
