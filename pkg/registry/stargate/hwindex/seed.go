package hwindex

import (
	"path"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Entries returns the index keys, and their values, that the server writes
// when it creates Hardware namespace/name (UID uid) with a normalised mac and
// ipv4, claiming them at claimedAt. For tools that fill etcd with exactly
// what the server would have written (test/bench seeds a million Hardware).
func Entries(storagePrefix, namespace, name string, uid types.UID, mac, ipv4 string, claimedAt time.Time) map[string]string {
	x := New(nil, storagePrefix, nil, 0)
	value := x.entryOf(holder{namespace: namespace, name: name, uid: uid}, claimedAt)
	return map[string]string{
		path.Join(x.prefix, "mac", mac):              value,
		path.Join(x.prefix, "ipv4", namespace, ipv4): value,
	}
}
