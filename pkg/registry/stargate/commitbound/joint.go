package commitbound

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	"k8s.io/apiserver/pkg/storage/etcd3/metrics"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/apiserver/pkg/storage/value/encrypt/identity"
)

// A Joint is a claim that a create commits in the same etcd transaction as
// its object. It needs no bound: the claim cannot be stored without the
// object, nor the object without the claim, and the create costs one round
// trip to etcd instead of two.
type Joint struct {
	// Client reaches the etcd the store writes to.
	Client *clientv3.Client
	// If are the claim's conditions (say, its keys are absent), Then its
	// writes; the transaction adds the object's own (its key is absent; put it).
	If   []clientv3.Cmp
	Then []clientv3.Op
	// Otherwise is called when the transaction failed on If alone (a key is
	// held, perhaps by a stale claim): it takes the claim on its own and may
	// Set a bound on the object, which the storage then writes alone, as any
	// bounded create. Its error ends the create, with nothing written.
	Otherwise func(ctx context.Context) error
}

// SetJoint makes the create of obj, the very object the store is about to
// create, commit j with it. Forget drops it.
func (s *Storage) SetJoint(obj runtime.Object, j *Joint) { s.joints.Store(obj, j) }

func (s *Storage) takeJoint(obj runtime.Object) (*Joint, bool) {
	v, ok := s.joints.LoadAndDelete(obj)
	if !ok {
		return nil, false
	}
	return v.(*Joint), true
}

// objects writes objects to etcd as the store's etcd3 storage does: the same
// key, encoding, transformation (encryption at rest) and resourceVersion.
type objects struct {
	pathPrefix, resourcePrefix string
	codec                      runtime.Codec
	transformer                value.Transformer
	decoder                    etcd3.Decoder
	versioner                  storage.Versioner
	resource                   schema.GroupResource
}

func newObjects(config *storagebackend.ConfigForResource, resourcePrefix string) *objects {
	pathPrefix := path.Join("/", config.Prefix)
	if !strings.HasSuffix(pathPrefix, "/") {
		pathPrefix += "/"
	}
	transformer := config.Transformer
	if transformer == nil {
		transformer = identity.NewEncryptCheckTransformer()
	}
	versioner := storage.APIObjectVersioner{}
	return &objects{pathPrefix: pathPrefix, resourcePrefix: resourcePrefix, codec: config.Codec, transformer: transformer,
		decoder: etcd3.NewDefaultDecoder(config.Codec, versioner), versioner: versioner, resource: config.GroupResource}
}

// key is the etcd key of the object at the store's key.
func (o *objects) key(key string) (string, error) {
	key, err := storage.PrepareKey(o.resourcePrefix, key, false)
	if err != nil {
		return "", err
	}
	return o.pathPrefix + strings.TrimPrefix(key, "/"), nil
}

// createJointly creates obj and j's claim in one transaction. It reports
// done=false, with nothing written, when the transaction failed on j.If only.
func (s *Storage) createJointly(ctx context.Context, key string, obj, out runtime.Object, j *Joint) (done bool, err error) {
	o := s.objects
	etcdKey, err := o.key(key)
	if err != nil {
		return true, err
	}
	if version, err := o.versioner.ObjectResourceVersion(obj); err == nil && version != 0 {
		return true, storage.ErrResourceVersionSetOnCreate
	}
	if err := o.versioner.PrepareObjectForStorage(obj); err != nil {
		return true, fmt.Errorf("PrepareObjectForStorage failed: %w", err)
	}
	data, err := runtime.Encode(o.codec, obj)
	if err != nil {
		return true, err
	}
	stored, err := o.transformer.TransformToStorage(ctx, data, value.DefaultContext(etcdKey))
	if err != nil {
		return true, storage.NewInternalError(err)
	}
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(etcdKey), "=", 0)}, j.If...)
	ops := append([]clientv3.Op{clientv3.OpPut(etcdKey, string(stored))}, j.Then...)
	start := time.Now()
	resp, err := j.Client.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(etcdKey, clientv3.WithCountOnly())).Commit()
	metrics.RecordEtcdRequest("create", o.resource, err, start)
	if err != nil {
		return true, err
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return true, storage.NewKeyExistsError(etcdKey, 0)
		}
		return false, nil
	}
	if out != nil {
		return true, o.decoder.Decode(data, out, resp.Header.Revision)
	}
	return true, nil
}
