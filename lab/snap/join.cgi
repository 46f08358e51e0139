#!/bin/sh
# k8s stand-in (k8s-airgap lab): a join, accepted only with the secret that
# `k8s get-join-token NAME` made for exactly that name; each secret works once.
STATE=/var/snap/k8s/common/stand-in
printf 'Content-Type: text/plain\r\n\r\n'
arg() { printf '%s' "$QUERY_STRING" | tr '&' '\n' | sed -n "s/^$1=//p" | head -n1; }
name=$(arg name); addr=$(arg address); version=$(arg version); secret=$(arg secret)
case "$name$addr$version" in
  *[!A-Za-z0-9.:-]*|"") echo "refused: bad name or address"; exit 0 ;;
esac
# As k8sd does: a joining node must run the cluster's version (this server's snap).
mine=$(sed -n "s/^version: *'\{0,1\}\([^']*\)'\{0,1\} *$/\1/p" /snap/k8s/current/meta/snap.yaml)
[ "$version" = "$mine" ] || {
  echo "refused: $name runs version $version, the cluster runs $mine"; exit 0; }
[ -f "$STATE/tokens/$name" ] || { echo "refused: no join token for $name"; exit 0; }
read -r want role < "$STATE/tokens/$name"
[ "$secret" = "$want" ] || { echo "refused: wrong join token for $name"; exit 0; }
rm -f "$STATE/tokens/$name"
grep -v "^$name " "$STATE/members" > "$STATE/members.new" || true
echo "$name $addr $role $version" >> "$STATE/members.new"
mv "$STATE/members.new" "$STATE/members"
echo "joined $role"
