"""PyTorch replica of the PaiNN training step of `benchmarks/train_breakdown.sh --models painn`
(hidden 64, 3 layers, 32 sinc radial functions, cutoff 5 A, batch of 8 rattled fcc cells of 32
atoms, about 43 edges per atom; energy + force loss with forces by autograd, so the backward is a
double backward), on the libtorch of the project's .venv, 1 thread, glibc malloc tuned as the
trainer does (`retain_freed_memory`). It times alternative formulations of the message block
(same mathematics) against the engine's current one (`base`: pair-major per-pair filters, the
padded (3 x k)(k x F) product for sum_j dvs_ij (x) e_ij, layer 0 without the v_j * dvv_ij term):

  a     filter expanded to every edge (index_select) instead of broadcast over pair-major edges
  b     layer 0 computes only the [ds, dvs] columns of phi and of the filter (2F wide, not 3F)
  ab    a + b
  c     y = v * phi_vv per atom, gathered and multiplied by the filter's vv part
  t5    one (N, 5F) table [phi_s, v * phi_vv, phi_vs] gathered once, one scatter for [ds, dv_vv]
  sp    sums into atoms as a sparse CSR (N x E) incidence matrix times the messages, not index_add
  upstream  HydraGNN's PainnMessage: the filter per edge (from per-edge distances), the full
        (E, 3, F) message v_j * dvv_ij + dvs_ij (x) e_ij in every layer, index_add
  fact  no per-edge products: W(r) = rbf'(r) Wt factorised, sum_j rbf'_ij (x) T_j as batched
        matrix products in the padded layout, then contracted with Wt

  .venv/bin/python benchmarks/painn_step_variants.py [--rounds 6] [--variants base,a,b,fact]
  .venv/bin/python benchmarks/painn_step_variants.py --check   # float64 agreement with base

The force loss is on atom forces (edge gradients summed), as in the trainer.
Prints CPU seconds per step (min and median over interleaved rounds; compare on one machine in
one run: a shared machine moves single runs by 10-20%). Measured 2026-11-26 23:19 UTC (load
2.6-3.5), median CPU-s/step over 5 rounds: base 0.353, a 0.388, b 0.372, ab 0.412, c 0.520,
t5 0.429, sp 0.402, upstream 0.487, fact 0.661: none faster than base; base is about 1.4x the
upstream formulation on the same libtorch (0.328 against 0.468 in a run at 23:19).
"""
import argparse, ctypes, itertools, math, sys, time
import warnings
import torch
warnings.filterwarnings("ignore", category=UserWarning)
ctypes.CDLL("libc.so.6").mallopt(-3, 32<<20); ctypes.CDLL("libc.so.6").mallopt(-1, 2**31-1)
torch.set_num_threads(1)
torch.manual_seed(0)
F=64; R=32; L=3; N=256; cutoff=5.0
# 8 rattled fcc cells of 32 atoms (a = 3.69 A), all periodic images within the cutoff
a0=3.69; rng=torch.Generator().manual_seed(1)
basis=torch.tensor([[0,0,0],[0.5,0.5,0],[0.5,0,0.5],[0,0.5,0.5]])
cells=torch.tensor(list(itertools.product(range(2),repeat=3)),dtype=torch.float)
frac=(cells[:,None,:]+basis[None]).reshape(-1,3)/2
A=[];B=[];V=[]
for g in range(8):
    p=(frac*2*a0 + 0.15*torch.randn(32,3,generator=rng))
    Lb=2*a0
    sh=torch.tensor(list(itertools.product(range(-2,3),repeat=3)),dtype=torch.float)*Lb
    d=p[None,:,None,:]+sh[None,None]-p[:,None,None,:]  # d[i,j,s]=x_j+s-x_i
    r=d.norm(dim=-1)
    ii,jj,ss=torch.nonzero((r<cutoff)&(r>1e-6),as_tuple=True)
    keep=(ii<jj)|((ii==jj)&(torch.arange(len(ii))>=0))
    for i,j,s_ in zip(ii.tolist(),jj.tolist(),ss.tolist()):
        if i<j or (i==j and s_<62):
            A.append(i+32*g);B.append(j+32*g);V.append(d[i,j,s_])
a=torch.tensor(A);b=torch.tensor(B);vec0=torch.stack(V)
H=len(A)
src = torch.cat([b,a]); dst = torch.cat([a,b])
E=2*H
vec = torch.cat([vec0,-vec0]).requires_grad_()
counts = torch.bincount(dst, minlength=N); k=int(counts.max())
sorted_, order = torch.sort(dst, stable=True)
offsets = counts.cumsum(0)-counts
rank = torch.arange(E)-offsets[sorted_]
row = torch.zeros_like(order).scatter(0, order, sorted_*k+rank)
if __name__ == "__main__": print("E/N",E/N,"E",E,"k",k,"pad ratio", N*k/E)
def lin(i,o,bias=True):
    w=(torch.randn(o,i)/math.sqrt(i)).requires_grad_(); bb=(torch.zeros(o)).requires_grad_() if bias else None
    return (w,bb)
def ap(x,l): return torch.nn.functional.linear(x,l[0],l[1])
def mlp(x,ls):
    for q,l in enumerate(ls):
        x=ap(x,l)
        if q+1<len(ls): x=torch.nn.functional.silu(x)
    return x
layers=[]
for l in range(L):
    layers.append(dict(phi=[lin(F,F),lin(F,3*F)], w=lin(R,3*F), u=lin(F,F,False), v=lin(F,F,False), upd=[lin(2*F,F),lin(F,3*F)]))
head=[lin(F,32),lin(32,1)]
params=[t for d in layers for kk in d.values() for l in (kk if isinstance(kk,list) else [kk]) for t in l if t is not None]+[t for l in head for t in l]
s0 = torch.randn(N,F)
def pad_rows(row,k,m):
    shape=list(m.shape); shape[0]=N*k
    t=torch.zeros(shape).index_copy(0,row,m)
    return t.view([N,k]+shape[1:])
def agg(dst,m):
    shape=list(m.shape); shape[0]=N
    return torch.zeros(shape).index_add(0,dst,m)
def geometry(vec):
    d = vec[:H].square().sum(-1).sqrt()
    n = torch.arange(1,R+1)
    rbf = torch.sin(d[:,None]*n*math.pi/cutoff)/d[:,None]
    env = 0.5*(torch.cos(math.pi*d/cutoff)+1)
    dist = vec.square().sum(-1).sqrt()
    return rbf, env, dist

def layer_base(l, s, v, rbf, env, dist, vec, aggregate=None):
    sum_in = aggregate or (lambda m: agg(dst, m))
    b=layers[l]
    dir_ = vec/dist[:,None]
    phi = mlp(s,b['phi'])
    filt = ap(rbf,b['w'])*env[:,None]
    x = (phi.index_select(0,src).view(2,-1,3*F)*filt.unsqueeze(0)).view(-1,3*F)
    ds,dvv,dvs = x.split(F,-1)
    vs_sum = pad_rows(row,k,dir_).transpose(1,2).bmm(pad_rows(row,k,dvs))
    s = s + sum_in(ds)
    if l==0: v = v + vs_sum
    else: v = v + sum_in(v.index_select(0,src)*dvv.unsqueeze(1)) + vs_sum
    return update(b,s,v)

def update(b,s,v):
    uv = ap(v,b['u']); vv = ap(v,b['v'])
    norm = (vv.square().sum(1)+1e-8).sqrt()
    a = mlp(torch.cat([s,norm],-1), b['upd'])
    avv,asv,ass = a.split(F,-1)
    dot=(uv*vv).sum(1)
    v = v + avv.unsqueeze(1)*uv
    s = s + asv*dot + ass
    return s,v

def atom_forces(g):
    # vec[e] = x[src[e]] - x[dst[e]]: -dE/dx from dE/dvec
    z = torch.zeros(N, 3, dtype=g.dtype)
    return z.index_add(0, dst, g) - z.index_add(0, src, g)

def step(layer_fn):
    rbf,env,dist = geometry(vec)
    s=s0; v=torch.zeros(N,3,F)
    for l in range(L): s,v = layer_fn(l,s,v,rbf,env,dist,vec)
    e = mlp(s,head).sum()
    g, = torch.autograd.grad(e, vec, create_graph=True)
    g = atom_forces(g)
    loss = e*e*1e-6 + 10*(g*g).mean()
    for p in params: p.grad=None
    loss.backward()
    return e.detach(), g.detach(), [p.grad.clone() for p in params]

def bench(fn, n=6, reps=3):
    step(fn)
    best=[]
    for r in range(reps):
        t=time.process_time()
        for i in range(n): step(fn)
        best.append((time.process_time()-t)/n)
    return best

def layer_t5(l, s, v, rbf, env, dist, vec):
    b=layers[l]
    dir_ = vec/dist[:,None]
    phi = mlp(s,b['phi'])
    ps, pvv, pvs = phi.split(F,-1)
    w, bias = b['w']
    ws, wvv, wvs = w.split(F,0); bs, bvv, bvs = bias.split(F,0)
    if l==0:
        table = torch.cat([ps, pvs],-1)
        W = torch.cat([ws,wvs],0); B = torch.cat([bs,bvs])
        w_ = 2
    else:
        table = torch.cat([ps, (v*pvv.unsqueeze(1)).reshape(N,3*F), pvs],-1)
        W = torch.cat([ws,wvv,wvv,wvv,wvs],0); B = torch.cat([bs,bvv,bvv,bvv,bvs])
        w_ = 5
    filt = torch.nn.functional.linear(rbf,W,B)*env[:,None]
    x = (table.index_select(0,src).view(2,-1,w_*F)*filt.unsqueeze(0)).view(-1,w_*F)
    dvs = x[:, (w_-1)*F:]
    vs_sum = pad_rows(row,k,dir_).transpose(1,2).bmm(pad_rows(row,k,dvs))
    agg1 = agg(dst, x[:, :(w_-1)*F])
    s = s + agg1[:, :F]
    if l==0: v = v + vs_sum
    else: v = v + agg1[:, F:].view(N,3,F) + vs_sum
    return update(b,s,v)

expand = torch.cat([torch.arange(H), torch.arange(H)])
def layer_a(l, s, v, rbf, env, dist, vec):
    b=layers[l]
    dir_ = vec/dist[:,None]
    phi = mlp(s,b['phi'])
    filt = (ap(rbf,b['w'])*env[:,None]).index_select(0,expand)
    x = phi.index_select(0,src)*filt
    ds,dvv,dvs = x.split(F,-1)
    vs_sum = pad_rows(row,k,dir_).transpose(1,2).bmm(pad_rows(row,k,dvs))
    s = s + agg(dst,ds)
    if l==0: v = v + vs_sum
    else: v = v + agg(dst, v.index_select(0,src)*dvv.unsqueeze(1)) + vs_sum
    return update(b,s,v)

def layer_c(l, s, v, rbf, env, dist, vec):
    # y = v*phi_vv per node; gather y; multiply by filter vv part only
    b=layers[l]
    dir_ = vec/dist[:,None]
    phi = mlp(s,b['phi'])
    filt = ap(rbf,b['w'])*env[:,None]
    fs, fvv, fvs = filt.split(F,-1)
    ps, pvv, pvs = phi.split(F,-1)
    if l==0:
        x = (phi.index_select(0,src).view(2,-1,3*F)*filt.unsqueeze(0)).view(-1,3*F)
        ds,dvv,dvs = x.split(F,-1)
    else:
        x = (phi.index_select(0,src).view(2,-1,3*F)*filt.unsqueeze(0)).view(-1,3*F)
        ds,dvv,dvs = x.split(F,-1)
        y = v*pvv.unsqueeze(1)
        m = (y.index_select(0,src).view(2,H,3,F)*fvv.view(1,H,1,F)).view(E,3,F)
    vs_sum = pad_rows(row,k,dir_).transpose(1,2).bmm(pad_rows(row,k,dvs))
    s = s + agg(dst,ds)
    if l==0: v = v + vs_sum
    else: v = v + agg(dst, m) + vs_sum
    return update(b,s,v)

def sel_rows(t):
    return torch.cat([t[:F], t[2*F:]],0)
def layer_b(l, s, v, rbf, env, dist, vec, pm=True):
    b=layers[l]
    dir_ = vec/dist[:,None]
    if l==0:
        h = torch.nn.functional.silu(ap(s,b['phi'][0]))
        w2,b2 = b['phi'][1]
        phi = torch.nn.functional.linear(h, sel_rows(w2), sel_rows(b2))
        w,bb = b['w']
        filt = torch.nn.functional.linear(rbf, sel_rows(w), sel_rows(bb))*env[:,None]
        wd=2
    else:
        phi = mlp(s,b['phi']); filt = ap(rbf,b['w'])*env[:,None]; wd=3
    if pm:
        x = (phi.index_select(0,src).view(2,-1,wd*F)*filt.unsqueeze(0)).view(-1,wd*F)
    else:
        x = phi.index_select(0,src)*filt.index_select(0,expand)
    ds = x[:,:F]; dvs = x[:,(wd-1)*F:]
    vs_sum = pad_rows(row,k,dir_).transpose(1,2).bmm(pad_rows(row,k,dvs))
    s = s + agg(dst,ds)
    if l==0: v = v + vs_sum
    else: v = v + agg(dst, v.index_select(0,src)*x[:,F:2*F].unsqueeze(1)) + vs_sum
    return update(b,s,v)
def layer_ab(*a): return layer_b(*a, pm=False)

src_pad = torch.zeros(N*k, dtype=torch.long).index_copy(0, row, src)
def geo_pad(rbf, env, dist, vec):
    dir_ = vec/dist[:,None]
    rbfe = rbf.index_select(0,expand)*env.index_select(0,expand)[:,None]
    Gs = torch.cat([rbfe, env.index_select(0,expand)[:,None]],1)  # (E,R+1)
    Gv = (Gs[:,:,None]*dir_[:,None,:]).reshape(E,-1)
    Gs_p = pad_rows(row,k,Gs); Gv_p = pad_rows(row,k,Gv)
    return Gs_p.transpose(1,2), Gv_p.transpose(1,2)
def layer_fact(l, s, v, geo):
    b=layers[l]
    GsT, GvT = geo
    phi = mlp(s,b['phi']); ps,pvv,pvs = phi.split(F,-1)
    w,bb = b['w']; Wf = torch.cat([w, bb[:,None]],1).t()  # (R+1,3F)
    Ws,Wvv,Wvs = Wf.split(F,-1)
    T2p = pvs.index_select(0,src_pad).view(N,k,F)
    Mvs = (GvT.bmm(T2p).view(N,R+1,3,F)*Wvs[:,None,:]).sum(1)
    if l==0:
        T1p = ps.index_select(0,src_pad).view(N,k,F)
        Ms = (GsT.bmm(T1p)*Ws).sum(1)
        v = v + Mvs
    else:
        T1 = torch.cat([ps,(v*pvv[:,None]).reshape(N,3*F)],1)
        T1p = T1.index_select(0,src_pad).view(N,k,4*F)
        Z1 = GsT.bmm(T1p)
        Ms = (Z1[:,:,:F]*Ws).sum(1)
        Mvv = (Z1[:,:,F:].reshape(N,R+1,3,F)*Wvv[:,None,:]).sum(1)
        v = v + Mvv + Mvs
    s = s + Ms
    return update(b,s,v)

def step_fact():
    rbf,env,dist = geometry(vec)
    geo = geo_pad(rbf,env,dist,vec)
    s=s0; v=torch.zeros(N,3,F)
    for l in range(L): s,v = layer_fact(l,s,v,geo)
    e = mlp(s,head).sum()
    g, = torch.autograd.grad(e, vec, create_graph=True)
    g = atom_forces(g)
    loss = e*e*1e-6 + 10*(g*g).mean()
    for p in params: p.grad=None
    loss.backward()
    return e.detach(), g.detach(), [p.grad.clone() for p in params]


S_dst = torch.sparse_coo_tensor(
    torch.stack([dst, torch.arange(E)]), torch.ones(E), (N, E)
).coalesce().to_sparse_csr()


def layer_sp(l, s, v, rbf, env, dist, vec):
    def agg_sp(m):
        sh = list(m.shape); sh[0] = N
        return (S_dst.to(m.dtype) @ m.reshape(E, -1)).view(sh)
    return layer_base(l, s, v, rbf, env, dist, vec, aggregate=agg_sp)


def step_upstream():
    dist = vec.square().sum(-1).sqrt()
    n = torch.arange(1, R + 1)
    rbf = torch.sin(dist[:, None] * n * math.pi / cutoff) / dist[:, None]
    env = 0.5 * (torch.cos(math.pi * dist / cutoff) + 1)
    s = s0; v = torch.zeros(N, 3, F)
    for l in range(L):
        b = layers[l]
        filt = ap(rbf, b['w']) * env[:, None]
        x = filt * mlp(s, b['phi']).index_select(0, src)
        ds, dvv, dvs = x.split(F, -1)
        mv = v.index_select(0, src) * dvv.unsqueeze(1) + dvs.unsqueeze(1) * (vec / dist[:, None]).unsqueeze(-1)
        s = s + torch.zeros_like(s).index_add(0, dst, ds)
        v = v + torch.zeros_like(v).index_add(0, dst, mv)
        s, v = update(b, s, v)
    e = mlp(s, head).sum()
    g, = torch.autograd.grad(e, vec, create_graph=True)
    g = atom_forces(g)
    loss = e * e * 1e-6 + 10 * (g * g).mean()
    for p in params: p.grad = None
    loss.backward()
    return e.detach(), g.detach(), [p.grad.clone() for p in params]


VARIANTS = {
    "base": lambda: step(layer_base),
    "a": lambda: step(layer_a),
    "b": lambda: step(layer_b),
    "ab": lambda: step(layer_ab),
    "c": lambda: step(layer_c),
    "t5": lambda: step(layer_t5),
    "sp": lambda: step(layer_sp),
    "upstream": step_upstream,
    "fact": step_fact,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--check", action="store_true", help="compare with base in float64")
    a = p.parse_args()
    names = [n for n in a.variants.split(",") if n]
    for n in names:
        if n not in VARIANTS:
            sys.exit(f"unknown variant {n!r}; known: {', '.join(VARIANTS)}")
    if a.check:
        global vec, s0
        torch.set_default_dtype(torch.float64)
        for t in params:
            t.data = t.data.double()
        vec = vec.detach().double().requires_grad_()
        s0 = s0.double()
        globals().update(vec=vec, s0=s0)
        e0, f0, g0 = VARIANTS["base"]()
        for n in names:
            e1, f1, g1 = VARIANTS[n]()
            rel = lambda x, y: ((x - y).abs().max() / y.abs().max().clamp_min(1e-300)).item()
            pg = max(rel(x, y) for x, y in zip(g1, g0))
            print(f"{n}: energy {rel(e1, e0):.1e}, forces {rel(f1, f0):.1e}, parameter gradients {pg:.1e}")
        return
    times = {n: [] for n in names}
    for n in names:
        VARIANTS[n]()
    for _ in range(a.rounds):
        for n in names:
            t = time.process_time()
            for _ in range(a.steps):
                VARIANTS[n]()
            times[n].append((time.process_time() - t) / a.steps)
    for n in names:
        ts = sorted(times[n])
        print(f"{n:8s} CPU-s/step min {ts[0]:.4f} median {ts[len(ts) // 2]:.4f} ({N / ts[len(ts) // 2]:.0f} atoms per CPU-second)")


if __name__ == "__main__":
    main()
