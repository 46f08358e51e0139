#!/bin/sh
# k8s stand-in (k8s-airgap lab): the members that joined, as `kubectl get node` shows
# them (JSON items, or a table with ?table=1). Ready: the member's join succeeded with
# its containerd answering; this node's own Ready is its containerd answering now.
STATE=/var/snap/k8s/common/stand-in
printf 'Content-Type: application/json\r\n\r\n'
self=$(cut -d' ' -f1 "$STATE/node" 2>/dev/null)
ready_of() {
  if [ "$1" = "$self" ]; then
    ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1 && echo True || echo False
  else
    echo True
  fi
}
case "$QUERY_STRING" in
  *table=1*)
    echo "NAME STATUS ROLES VERSION"
    while read -r name addr role version; do
      r=$(ready_of "$name"); [ "$r" = True ] && s=Ready || s=NotReady
      echo "$name $s $role v$version"
    done < "$STATE/members"
    exit 0 ;;
esac
printf '{"apiVersion":"v1","kind":"List","items":['
sep=""
while read -r name addr role version; do
  printf '%s{"metadata":{"name":"%s","labels":{"k8s-airgap.lab/role":"%s"}},' "$sep" "$name" "$role"
  printf '"status":{"addresses":[{"type":"InternalIP","address":"%s"}],' "$addr"
  printf '"conditions":[{"type":"Ready","status":"%s"}],' "$(ready_of "$name")"
  printf '"nodeInfo":{"kubeletVersion":"v%s"}}}' "$version"
  sep=","
done < "$STATE/members"
printf ']}\n'
