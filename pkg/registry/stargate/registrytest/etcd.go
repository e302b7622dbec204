// Package registrytest runs the stargate.io registries against a real etcd in
// tests, the way kube-apiserver's registrytest does.
package registrytest

import (
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/generic"
	etcd3testing "k8s.io/apiserver/pkg/storage/etcd3/testing"
	"k8s.io/apiserver/pkg/storage/storagebackend"

	"stargate.io/stargate/pkg/apis/stargate/install"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// Scheme returns a scheme with the stargate.io group installed.
func Scheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return scheme
}

// RESTOptionsGetter serves storage on an embedded etcd started for this test
// and stopped at its end. Objects are stored as v1alpha1 JSON, as in the server.
func RESTOptionsGetter(t *testing.T, scheme *runtime.Scheme) generic.RESTOptionsGetter {
	t.Helper()
	getter, _, _ := Etcd(t, scheme)
	return getter
}

// Etcd is RESTOptionsGetter plus a client of the same etcd and the storage
// prefix, for registries that keep keys of their own (the identity index).
func Etcd(t *testing.T, scheme *runtime.Scheme) (getter generic.RESTOptionsGetter, client *clientv3.Client, prefix string) {
	t.Helper()
	server, config := etcd3testing.NewUnsecuredEtcd3TestClientServer(t)
	config.Codec = serializer.NewCodecFactory(scheme).LegacyCodec(v1alpha1.SchemeGroupVersion)
	return optionsGetter{config: config}, server.V3Client.Client, config.Prefix
}

type optionsGetter struct {
	config *storagebackend.Config
}

func (g optionsGetter) GetRESTOptions(resource schema.GroupResource, example runtime.Object) (generic.RESTOptions, error) {
	return generic.RESTOptions{
		StorageConfig:           g.config.ForResource(resource),
		Decorator:               generic.UndecoratedStorage,
		DeleteCollectionWorkers: 1,
		ResourcePrefix:          resource.Group + "/" + resource.Resource,
	}, nil
}

// ColumnNames returns a table's column names, joined by commas, as kubectl
// would print them before upper-casing.
func ColumnNames(table *metav1.Table) string {
	names := make([]string, 0, len(table.ColumnDefinitions))
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}

// Race runs do(0..n-1) all at once and returns how many succeeded and the
// errors of those that lost as expected (isLoss). Any other error fails the test.
func Race(t *testing.T, n int, isLoss func(error) bool, do func(i int) error) (won int, losses []error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = do(i) }()
	}
	wg.Wait()
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case isLoss(err):
			losses = append(losses, err)
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	return won, losses
}
