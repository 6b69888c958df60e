// The KubeConfig of `--kubernetes`: a file named by `--kubeconfig`, else client-node's
// default (in a pod, the ServiceAccount's in-cluster config; outside, $KUBECONFIG or ~/.kube/config).
import { KubeConfig } from '@kubernetes/client-node';

export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file !== undefined) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}
