#!/usr/bin/perl
# Turns schema/openapi.json into the C definition of the document that
# `sa-admin serve` answers at GET /v1/openapi.json (serve/openapi.c):
#   const char  sa_openapi_json[] = "<the document, compact>";
# A document that is no JSON object stops the build.
#
#   embed-openapi.pl schema/openapi.json > openapi_json.c
use strict;
use warnings;
use JSON::PP;

my ($path) = @ARGV or die "usage: embed-openapi.pl FILE\n";
open my $fh, '<:raw', $path or die "$path: $!\n";
my $text = do { local $/; <$fh> };
my $doc = eval { JSON::PP->new->decode($text) };
die "$path: not JSON: $@" unless ref $doc eq 'HASH';
die "$path: not an OpenAPI 3.1 document\n"
    unless ($doc->{openapi} // '') =~ /^3\.1\./ && ref $doc->{paths} eq 'HASH';

my $json = JSON::PP->new->ascii->canonical->encode($doc);
my @lines;
while (length $json) {
    (my $chunk = substr($json, 0, 96, '')) =~ s/([\\"?])/\\$1/g;
    push @lines, "    \"$chunk\"";
}
print "/* generated from $path by admin-tool/serve/embed-openapi.pl: do not edit */\n\n";
print "const char  sa_openapi_json[] =\n", join("\n", @lines), ";\n";
