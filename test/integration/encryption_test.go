package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/cmd/server"
)

// TestEncryptionAtRest: with the standard --encryption-provider-config,
// a Template's cloud-init (which may hold join tokens) is not readable in etcd,
// yet reads back intact through the API.
func TestEncryptionAtRest(t *testing.T) {
	config := filepath.Join(t.TempDir(), "encryption.yaml")
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if err := os.WriteFile(config, []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: ["templates.stargate.io"]
  providers:
  - aescbc:
      keys:
      - name: key1
        secret: `+key+`
  - identity: {}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, "", func(o *server.Options) { o.RecommendedOptions.Etcd.EncryptionProviderConfigFilepath = config })

	const secret = "kubeadm join --token abcdef.0123456789abcdef"
	ctx := context.Background()
	_, err := ts.Client.StargateV1alpha1().Templates(ns).Create(ctx, &v1alpha1.Template{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: ns},
		Spec: v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/x.img",
			CloudInit: &v1alpha1.CloudInit{UserData: secret}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ts.Client.StargateV1alpha1().Templates(ns).Get(ctx, "os-2-0-0", metav1.GetOptions{})
	if err != nil || got.Spec.CloudInit.UserData != secret {
		t.Fatalf("read back through the API: %v %+v", err, got)
	}

	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{ts.EtcdURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	resp, err := etcd.Get(ctx, server.DefaultEtcdPathPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, kv := range resp.Kvs {
		if !strings.Contains(string(kv.Key), "templates") {
			continue
		}
		found = true
		if !bytes.HasPrefix(kv.Value, []byte("k8s:enc:aescbc:v1:key1:")) || bytes.Contains(kv.Value, []byte("kubeadm join")) {
			t.Errorf("%s is stored in clear: %.80q", kv.Key, kv.Value)
		}
	}
	if !found {
		t.Fatalf("no template key under %s in etcd", server.DefaultEtcdPathPrefix)
	}
}
