# The 503 page: language by Accept-Language (q-values), JSON form for /api/
# and for clients preferring application/json, Retry-After from the state.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $ng = NbTest::Nginx->new(http => std_http());
$ng->start;

# first upgrade without retry_after: the default 300
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'i18n test' });
is($r->{status}, 200, 'upgrade') or diag $r->{content};
$r = $ng->get('/');
is($r->{status}, 503, 'gated in upgrade');
is($r->{headers}{'retry-after'}, '300', 'Retry-After 300 by default');
$ng->admin(POST => 'restore');

$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'i18n test', retry_after => 120 });
is($r->{json}{retry_after}, 120, 'retry_after 120');

# ---- Accept-Language ---------------------------------------------------------------
my @cases = (
    [ undef                                   => 'en' ],
    [ 'en'                                    => 'en' ],
    [ 'en-US,en;q=0.9'                        => 'en' ],
    [ 'de'                                    => 'de' ],
    [ 'de-AT'                                 => 'de' ],
    [ 'de-DE,de;q=0.9,en;q=0.8'               => 'de' ],
    [ 'sv'                                    => 'sv' ],
    [ 'sv-SE'                                 => 'sv' ],
    [ 'ru'                                    => 'ru' ],
    [ 'ru-RU,ru;q=0.9'                        => 'ru' ],
    [ 'zh'                                    => 'zh-CN' ],
    [ 'zh-CN'                                 => 'zh-CN' ],
    [ 'zh-cn'                                 => 'zh-CN' ],
    [ 'zh-Hans'                               => 'zh-CN' ],
    [ 'zh-Hans-CN,zh;q=0.9'                   => 'zh-CN' ],
    [ 'DE'                                    => 'de' ],
    [ 'fr'                                    => 'en' ],
    [ 'fr-FR,fr;q=0.9'                        => 'en' ],
    [ 'fr, de;q=0.5'                          => 'de' ],
    [ 'fr;q=1, en;q=0.5, de;q=0.4'            => 'en' ],
    [ 'de;q=0.1, sv;q=0.9'                    => 'sv' ],
    [ 'de;q=0.1,sv;q=0.9'                     => 'sv' ],
    [ 'ru;q=0.3, de; q=0.2'                   => 'ru' ],
    [ 'de; q=0.2, ru; q=0.3'                  => 'ru' ],
    [ 'sv;q=0.9, de'                          => 'de' ],
    [ 'en;q=0.2, zh-CN;q=0.8, de;q=0.5'       => 'zh-CN' ],
    [ 'de;q=0, ru'                            => 'ru' ],
    [ 'de;q=0'                                => 'en' ],
    [ 'de;q=0.000, sv;q=0.001'                => 'sv' ],
    [ 'ru;q=1.0, de;q=0.999'                  => 'ru' ],
);
for my $c (@cases) {
    my ($al, $want) = @$c;
    my $res = $ng->get('/', defined $al ? { 'Accept-Language' => $al } : {});
    my $label = 'Accept-Language: ' . ($al // '(none)');
    is($res->{status}, 503, "$label: 503");
    my ($lang) = ($res->{content} // '') =~ /<html[^>]*\blang="([^"]*)"/;
    is($lang, $want, "$label -> lang=\"$want\"");
}
# distinct languages really give distinct pages
my %pages = map { ($_ => $ng->get('/', { 'Accept-Language' => $_ })->{content}) } qw(en de sv ru zh-CN);
my %uniq = map { ($_ => 1) } values %pages;
is(scalar keys %uniq, 5, 'five different page texts for en, de, sv, ru, zh-CN');
{
    my $res = $ng->get('/', { 'Accept-Language' => 'zh-CN' });
    ok(($res->{headers}{'content-type'} // '') =~ /charset=utf-8/i || ($res->{content} // '') =~ /charset=["']?utf-8/i,
       'zh-CN page declares UTF-8 (header or meta)');
}

# malformed headers never break the answer
for my $al ('de;q=abc', ';;;,,,', 'q=0.5', 'de;q=', ('x' x 2000), 'de;q=0.5;q=0.9', '*', '*;q=0.5, ru') {
    my $res = $ng->get('/', { 'Accept-Language' => $al });
    is($res->{status}, 503, 'odd Accept-Language ' . substr($al, 0, 20) . ': still 503');
    like($res->{content} // '', qr/<html[^>]*\blang="(?:en|zh-CN|de|sv|ru)"/, '... with a page');
}

# ---- JSON form ------------------------------------------------------------------------
sub check_json {
    my ($label, $res, $mode, $ra) = @_;
    is($res->{status}, 503, "$label: 503");
    like($res->{headers}{'content-type'} // '', qr{^application/json}, "$label: application/json");
    is($res->{headers}{'retry-after'}, $ra, "$label: Retry-After $ra");
    is($res->{headers}{'x-nb-maint'}, $mode, "$label: X-NB-Maint");
    like($res->{headers}{'cache-control'} // '', qr/no-store/, "$label: no-store");
    my $e = ref $res->{json} eq 'HASH' ? $res->{json}{error} : undef;
    is(ref $e, 'HASH', "$label: {error:{...}}") or return diag $res->{content};
    is($e->{status}, 503, "$label: error.status 503");
    ok(JSON::PP::is_bool($e->{maintaining}) && $e->{maintaining}, "$label: maintaining true");
    is($e->{code}, 'APP_COMMANDING', "$label: code APP_COMMANDING");
    is_deeply($e->{command}, { name => $mode }, "$label: command.name = $mode");
    ok(defined $e->{message} && !ref $e->{message} && length $e->{message}, "$label: message");
    is($e->{nb_maint}, $mode, "$label: nb_maint = $mode");
    is($e->{retry_after}, $ra, "$label: retry_after $ra");
}
check_json('GET /api/x', $ng->get('/api/x'), 'upgrade', 120);
check_json('GET /api/', $ng->get('/api/'), 'upgrade', 120);
check_json('GET /api/auth:check?x=1', $ng->get('/api/auth:check?x=1'), 'upgrade', 120);
check_json('GET /api/x with Accept text/html', $ng->get('/api/x', { Accept => 'text/html' }), 'upgrade', 120);
check_json('POST /api/users:create', $ng->req(POST => '/api/users:create', { 'Content-Type' => 'application/json' }, '{}'),
           'upgrade', 120);
check_json('Accept: application/json', $ng->get('/', { Accept => 'application/json' }), 'upgrade', 120);
check_json('Accept: application/json, text/html;q=0.9', $ng->get('/admin', { Accept => 'application/json, text/html;q=0.9' }),
           'upgrade', 120);
check_json('Accept: text/html;q=0.5, application/json', $ng->get('/', { Accept => 'text/html;q=0.5, application/json' }),
           'upgrade', 120);

for my $c ([ '/apix' => undef ], [ '/x/api/y' => undef ],
           [ '/' => 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' ],
           [ '/' => 'text/html,application/json;q=0.9' ],
           [ '/' => '*/*' ]) {
    my ($p, $acc) = @$c;
    my $res = $ng->get($p, $acc ? { Accept => $acc } : {});
    my $label = "GET $p" . ($acc ? " Accept: $acc" : '');
    is($res->{status}, 503, "$label: 503");
    like($res->{headers}{'content-type'} // '', qr{^text/html}, "$label: HTML");
}

# ---- Retry-After follows the state ----------------------------------------------------
$ng->admin(POST => 'restore');
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', retry_after => 33 });
is($r->{json}{retry_after}, 33, 'retry_after 33');
for (1 .. 10) {
    my $res = $ng->get('/api/x');
    is($res->{headers}{'retry-after'}, '33', 'Retry-After 33 after the change');
    is($res->{json}{error}{retry_after}, 33, 'JSON retry_after 33 after the change');
}
is($ng->get('/', { 'Accept-Language' => 'sv' })->{headers}{'retry-after'}, '33', 'HTML: Retry-After 33');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
