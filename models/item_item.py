"""The hybrid teacher's item-to-item component: EASE fitted on the train split, as two tables.

EASE (Steck, 2019; `evaluation.baselines.ease_weights`) scores item j for a user as
Σ_{i ∈ history} B[i, j]: the item-to-item structure that sparse logs hold and that neural
towers learn poorly from few labels. Factorised, B ≈ H · Cᵀ, that score is a dot product of two
towers: the query side sums the history items' rows of H, the candidate side is item j's row of
C. So the teacher (`models.teacher`) appends both as r frozen dimensions to its learnt query and
candidate embeddings, mixes both scores with weights chosen on the eval split, and is served by
the same top-K index as any two-tower model, at 2·n·r floats where B is n². Two
factorisations, chosen between on the eval split:
- `SVD`: B's truncated SVD, its best rank-r approximation;
- `EIGEN`: with G = XᵀX = V Σ Vᵀ and P = (G + λI)⁻¹, every off-diagonal
  B[i, j] = -P[i, j] / P[j, j] is Σ_m V[i, m] · σ_m / (σ_m + λ) · V[j, m] / (λ P[j, j]), so
  H = V · diag(σ / (σ + λ)) and C = diag(1 / (λ P)) · V over G's r leading eigenvectors (the
  diagonal, an item scoring itself, differs from B's 0; history items are never ranked). It
  regularises B as a ridge on its spectrum does, and on the sparse test bed ranks better than
  the full B at rank 256 (docs/results.md).
The eigen tables are one table and two scalings, H = diag(λ P) · C · diag(σ / (σ + λ)): models
store the candidate table and the scalings (`towers.ScaledRows`), half the bytes of two tables.
Lower ranks (`ItemItemTables.truncated`, what a student inherits and what `fit` compares) keep
the eigen tables' leading columns, which are the eigen factorisation at that rank. Other tables
are cut to the best factorisation at that rank of H · Cᵀ without its diagonal: an item's score
for itself never ranks (on the test bed, rank 64: eval NDCG@10 0.082 with the diagonal, 0.093
without). Re-factorising the eigen tables that way ranked worse: on wide-short, rank 240
of the rank-256 tables, eval NDCG@10 of the component alone 0.0437 against 0.0465 for the
leading columns (docs/results.md).

A popularity exponent β scales each candidate row by (1 + the item's train interactions)^β
(`ItemItemTables.popularity_scaled`): below 0 it lowers the scores of popular items against rare
ones, as popularity-normalised item-to-item scores do, and on the sparse test bed it lifts the
teacher's long-tail Recall@100 past EASE's (docs/results.md); 0 is EASE's own ranking. A
student's inherited tables, fewer leading columns, get their exponent chosen again at their rank
(`best_popularity_shift`).

The L2 weight, the rank, the history window (how many of the latest history items the query
sums: recent items predict better on some logs, whole profiles on others) and the popularity
exponent are chosen on the eval split: NDCG@10 of the first eval users' queries (their
transformed histories, as the teacher sees them), full catalogue, seen items excluded; every
combination of the first four at exponent 0, then a local search over all five from the best
of them. A warm run (`fit`'s `start`) keeps the earlier run's choice and fits its tables on
its window: on two logs its int8 student ranked as well as after a local search from that
choice, in less time (docs/results.md); a run that retrains cold as the window outgrows its
models (`warm_start.refresh_due`) chooses again. G is fitted over the `max_items` most popular
train items (n³ time, n² memory); the others get zero rows, as do padding, out-of-vocabulary
and cold items, which the towers alone score.
"""
import dataclasses
import itertools
import os
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from contract import features
from evaluation import baselines
from evaluation import metrics as metrics_lib
from evaluation import protocol
from models import eval_split
from models import grid_search
from models import hparams
from models import towers

TABLES_FILE = 'item_item.npz'  # where `save` writes the tables in a directory
# The factorisations `fit` chooses from on the eval split (module docstring).
EIGEN, SVD = 'eigen', 'svd'
FACTORISATIONS = (EIGEN, SVD)


@dataclasses.dataclass(frozen=True)
class ItemItemTables:
  """The factorised item-to-item weights, rows by item index (`towers.Vocabularies.items`).

  Attributes:
    history: float32 [item indices, rank]: the rows that a query sums over its history.
    candidates: float32 [item indices, rank]: each candidate's row.
    l2: the chosen EASE L2 weight (NaN for tables read back from a model, `from_core`).
    window: the latest history items the query sums (the others start with weight 0).
    eval_ndcg: NDCG@10 of the component alone on the eval queries (None without an eval split).
    popularity: the popularity exponent β of the candidate rows (module docstring; NaN for
      tables read back from a model, `from_core`).
  """
  history: np.ndarray
  candidates: np.ndarray
  l2: float
  window: int
  eval_ndcg: Optional[float] = None
  popularity: float = 0.0
  # When set (the eigen factorisation's tables and their truncations), history[i] =
  # row_scales[i] · candidates[i] ⊙ column_weights: one table and two scalings hold both
  # (`towers.ScaledRows`).
  row_scales: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)
  column_weights: Optional[np.ndarray] = dataclasses.field(default=None, repr=False,
                                                           compare=False)
  # `truncated`'s factorisations by rank, computed once.
  _truncations: Dict[int, 'ItemItemTables'] = dataclasses.field(
      default_factory=dict, init=False, repr=False, compare=False)

  @property
  def rank(self) -> int:
    return self.history.shape[1]

  @property
  def factorisation(self) -> str:
    return EIGEN if self.row_scales is not None else SVD

  def choice(self) -> Dict[str, object]:
    """The factorisation, L2 weight, rank, window and popularity exponent of these tables: where
    a later run's choice starts from (`fit`'s `start`)."""
    return dict(factorisation=self.factorisation, l2=self.l2, rank=self.rank, window=self.window,
                popularity=self.popularity)

  def popularity_scaled(self, counts: np.ndarray, exponent: float) -> 'ItemItemTables':
    """These tables at popularity exponent `exponent` (`counts`: the train interactions by item
    index): each candidate row times (1 + counts)^(`exponent` − theirs), the history rows
    unchanged."""
    if np.isnan(self.popularity):
      raise ValueError('the popularity exponent of tables read back from a model is unknown')
    return self.popularity_shifted(counts, exponent - self.popularity)

  def popularity_shifted(self, counts: np.ndarray, shift: float) -> 'ItemItemTables':
    """These tables at a popularity exponent `shift` higher (`counts`: the train interactions by
    item index): each candidate row times (1 + counts)^`shift`, the history rows unchanged; an
    unknown exponent (NaN, tables read back from a model) stays unknown."""
    if shift == 0:
      return self
    scales = ((1.0 + counts) ** shift).astype(np.float32)
    candidates = self.candidates * scales[:, None]
    popularity = self.popularity + shift
    if self.row_scales is None:
      return dataclasses.replace(self, candidates=candidates, popularity=popularity)
    return dataclasses.replace(self, candidates=candidates, row_scales=self.row_scales / scales,
                               popularity=popularity)

  def truncated(self, rank: int) -> 'ItemItemTables':
    """These tables at rank `rank` (module docstring): the eigen tables' leading columns, or
    the best factorisation of the other tables' scores between distinct items (history ·
    candidatesᵀ without its diagonal), split evenly between both tables. These tables when
    `rank` is not below theirs."""
    if rank >= self.rank:
      return self
    if self.row_scales is not None:
      return dataclasses.replace(self, history=self.history[:, :rank],
                                 candidates=self.candidates[:, :rank],
                                 column_weights=self.column_weights[:rank])
    if rank not in self._truncations:
      self._truncations[rank] = self._factorised(rank)
    return self._truncations[rank]

  def _factorised(self, rank: int) -> 'ItemItemTables':
    history, candidates = self.history.astype(np.float64), self.candidates.astype(np.float64)
    diagonal = np.einsum('ij,ij->i', history, candidates)

    def product(left: np.ndarray, right: np.ndarray):
      """x ↦ (left · rightᵀ − diag) x, for a vector or a matrix x."""
      return lambda x: left @ (right.T @ x) - (diagonal * x.T).T

    scores = sparse_linalg.LinearOperator(
        (len(history), len(candidates)), dtype=np.float64,
        matvec=product(history, candidates), matmat=product(history, candidates),
        rmatvec=product(candidates, history), rmatmat=product(candidates, history))
    u, s, vt = truncated_svd(scores, rank)
    root = np.sqrt(s)

    # Rows that score nothing (padding, out-of-vocabulary, cold items) stay zero; with fewer
    # rows than `rank`, zero columns fill the tables to it.
    def rows(factors: np.ndarray, table: np.ndarray) -> np.ndarray:
      values = np.pad(factors, [(0, 0), (0, rank - factors.shape[1])])
      return (values * table.any(axis=1, keepdims=True)).astype(np.float32)

    return dataclasses.replace(self, history=rows(u * root, self.history),
                               candidates=rows(vt.T * root, self.candidates))

  @classmethod
  def from_core(cls, core) -> 'ItemItemTables':
    """The tables of a model core built with them (`towers.with_item_item`)."""
    logits = core.get_layer('item_item_pooling').recency_logits.numpy()
    fields = dict(l2=float('nan'), window=int(np.sum(logits > -1.0)), popularity=float('nan'))
    history = core.get_layer('item_item_history')
    candidates = core.get_layer('item_item_candidate').get_weights()[0]
    if isinstance(history, towers.ScaledRows):  # the candidate table's rows, scaled
      return cls.shared(candidates, history.row_scales.numpy()[:, 0],
                        history.column_weights.numpy(), **fields)
    return cls(history.get_weights()[0], candidates, **fields)

  @classmethod
  def shared(cls, candidates: np.ndarray, row_scales: np.ndarray, column_weights: np.ndarray,
             **fields) -> 'ItemItemTables':
    """The tables whose history rows are the candidate rows scaled by item and by column."""
    return cls(candidates * row_scales[:, None] * column_weights, candidates,
               row_scales=row_scales, column_weights=column_weights, **fields)

  def save(self, directory: str) -> None:
    shared = ({} if self.row_scales is None
              else dict(row_scales=self.row_scales, column_weights=self.column_weights))
    np.savez(os.path.join(directory, TABLES_FILE), history=self.history,
             candidates=self.candidates, l2=self.l2, window=self.window,
             popularity=self.popularity,
             eval_ndcg=np.nan if self.eval_ndcg is None else self.eval_ndcg, **shared)

  @classmethod
  def load(cls, directory: str) -> 'ItemItemTables':
    with np.load(os.path.join(directory, TABLES_FILE)) as saved:
      eval_ndcg = float(saved['eval_ndcg'])
      fields = dict(l2=float(saved['l2']), window=int(saved['window']),
                    popularity=float(saved['popularity']) if 'popularity' in saved else 0.0,
                    eval_ndcg=None if np.isnan(eval_ndcg) else eval_ndcg)
      if 'row_scales' in saved:
        return cls.shared(saved['candidates'], saved['row_scales'], saved['column_weights'],
                          **fields)
      return cls(saved['history'], saved['candidates'], **fields)


def truncated_svd(matrix, rank: int, power_iterations: int = 3,
                  seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(U, s, Vᵀ) of the best rank-`rank` approximation of `matrix` (an array, or a
  `scipy.sparse.linalg.LinearOperator` of a matrix known by its products): exact for small
  matrices, randomised (Halko et al., 2011) beyond."""
  if min(matrix.shape) <= 2 * rank:
    dense = (matrix if isinstance(matrix, np.ndarray)
             else matrix @ np.eye(matrix.shape[1], dtype=matrix.dtype))
    u, s, vt = np.linalg.svd(dense, full_matrices=False)
    return u[:, :rank], s[:rank], vt[:rank]
  rng = np.random.default_rng(seed)
  basis = np.linalg.qr(matrix @ rng.standard_normal((matrix.shape[1], rank + 16))
                       .astype(matrix.dtype))[0]
  for _ in range(power_iterations):
    basis = np.linalg.qr(matrix.T @ basis)[0]
    basis = np.linalg.qr(matrix @ basis)[0]
  u, s, vt = np.linalg.svd((matrix.T @ basis).T, full_matrices=False)
  return (basis @ u)[:, :rank], s[:rank], vt[:rank]


def _svd_tables(kept: np.ndarray, weights: np.ndarray, rank: int, num_item_indices: int,
                **fields) -> ItemItemTables:
  """The tables over the `kept` item indices of B's best rank-`rank` factorisation (truncated
  SVD, the singular values split evenly between both); zero rows elsewhere."""
  u, s, vt = truncated_svd(weights, rank)
  return ItemItemTables(_rows(kept, u * np.sqrt(s), num_item_indices),
                        _rows(kept, vt.T * np.sqrt(s), num_item_indices), **fields)


def _eigen_tables(kept: np.ndarray, eigenvectors: np.ndarray, eigenvalues: np.ndarray,
                  precision_diagonal: np.ndarray, num_item_indices: int, l2: float,
                  **fields) -> ItemItemTables:
  """The tables over the `kept` item indices (module docstring: H and C) of G's leading
  eigenvectors and eigenvalues, the L2 weight and diag((G + l2 I)⁻¹), zero rows elsewhere, in
  the form of one table: H = diag(l2 P) · C · diag(σ / (σ + l2))."""
  row_scales = np.ones(num_item_indices, np.float32)
  row_scales[kept] = l2 * precision_diagonal
  return ItemItemTables.shared(
      _rows(kept, eigenvectors / (l2 * precision_diagonal)[:, None], num_item_indices),
      row_scales, (eigenvalues / (eigenvalues + l2)).astype(np.float32), l2=l2, **fields)


def _rows(kept: np.ndarray, rows: np.ndarray, num_item_indices: int) -> np.ndarray:
  """A table of `num_item_indices` rows: `rows` at the `kept` indices, zero elsewhere."""
  table = np.zeros((num_item_indices, rows.shape[1]), np.float32)
  table[kept] = rows
  return table


def latest(histories: np.ndarray, window: int) -> np.ndarray:
  """The latest `window` items of right-padded [queries, length] histories (padding 0)."""
  count = np.count_nonzero(histories != features.PADDING_INDEX, axis=1)[:, None]
  positions = np.arange(histories.shape[1])[None, :]
  return np.where(positions >= count - window, histories, features.PADDING_INDEX)


def history_counts(histories: np.ndarray, window: int,
                   num_item_indices: int) -> sparse.csr_matrix:
  """[queries, item indices]: how often each item is among a query's latest `window` history
  items (`latest`); times a table, the sums of its history rows that the component's queries
  are."""
  rows, positions = np.nonzero(latest(histories, window) != features.PADDING_INDEX)
  return sparse.csr_matrix(
      (np.ones(len(rows), np.float32), (rows, histories[rows, positions])),
      shape=(len(histories), num_item_indices))


def _eval_ndcg(queries: np.ndarray, candidates: np.ndarray,
               eval_queries: eval_split.EvalQueries) -> float:
  """NDCG@10 of the component's scores (`queries` · candidate rows) on the eval queries, over
  their catalogue (item index c + 1 in column c)."""
  scores = queries @ candidates[eval_queries.eval_data.items.to_numpy()].T
  return metrics_lib.ranking_metrics(scores, eval_queries.eval_data,
                                     ks=(metrics_lib.CUTOFF,))[f'ndcg@{metrics_lib.CUTOFF}']


def best_popularity_shift(tables: ItemItemTables, counts: np.ndarray,
                          eval_queries: eval_split.EvalQueries,
                          shifts: Sequence[float]) -> ItemItemTables:
  """`tables` (a student's inherited ones, at its rank) at the popularity shift of `shifts`
  (`ItemItemTables.popularity_shifted`) that ranks the eval queries best, from a local search
  that starts at 0 (the exponent chosen for the teacher's tables): cut to fewer leading columns,
  the tables keep less of the rare items' structure, and their best exponent moves (on the
  sparse test bed from −0.05 at rank 256 to −0.1 at rank 176; docs/results.md)."""
  shifts = sorted(set(shifts) | {0.0})
  queries = history_counts(eval_queries.queries[features.HISTORY_INDICES], tables.window,
                           len(tables.history)) @ tables.history  # the shift leaves them alone

  def ndcg(point: Tuple[float]) -> float:
    value = _eval_ndcg(queries, tables.popularity_shifted(counts, point[0]).candidates,
                       eval_queries)
    logging.debug('Inherited item-item component, rank %d, popularity shift %g: eval NDCG@10 '
                  '%.4f', tables.rank, point[0], value)
    return value

  shift, = grid_search.best_point([shifts], ndcg, (0.0,))
  logging.info('Inherited item-item component, rank %d: popularity shift %g', tables.rank, shift)
  return tables.popularity_shifted(counts, shift)


def fit(users: np.ndarray, items: np.ndarray, num_item_indices: int, history_length: int,
        eval_queries: Optional[eval_split.EvalQueries], params: hparams.ItemItemHParams,
        start: Optional[Dict[str, object]] = None) -> ItemItemTables:
  """The tables of the (factorisation, L2 weight, rank, history window, popularity exponent) of
  `params` that rank the eval queries best: the best of every point at the exponent nearest 0,
  then of a local search from it (to its best neighbour, one step along one of the five, while
  that ranks better); or with `start` (a warm run's: the earlier run's choice,
  `ItemItemTables.choice`) the tables of the point nearest it, fitted on these interactions and
  nothing else ranked but that point.

  Args:
    users, items: the train interactions' user and item indices
      (`inputs.TrainStats.pairs`).
    num_item_indices: rows of the tables (`towers.Vocabularies.items`).
    history_length: the length of the queries' histories (the largest window).
    eval_queries: the eval queries in index space (`eval_split.collect`), or None: then the
      middle L2 weight, the largest rank, the largest window and the exponent nearest 0.
    params: the candidate L2 weights, ranks, windows and popularity exponents, and how many
      items B covers.
    start: the choice to keep, or None to search.
  """
  counts = np.bincount(items, minlength=num_item_indices)
  counts[features.PADDING_INDEX] = 0
  kept = np.sort(np.argsort(-counts, kind='stable')[:params.max_items])
  kept = kept[counts[kept] > 0]
  position = np.full(num_item_indices, -1)
  position[kept] = np.arange(len(kept))
  user_rows = np.unique(users, return_inverse=True)[1]
  train = protocol.binary_matrix(user_rows, position[items], (user_rows.max() + 1, len(kept)))
  ranks = sorted({min(rank, len(kept)) for rank in params.ranks})
  windows = sorted({min(window, history_length) for window in params.windows})
  l2_values = sorted(params.l2_values)
  exponents = sorted(params.popularity_exponents)
  neutral = min(exponents, key=abs)  # EASE's own ranking where the grid holds 0
  if eval_queries is None:
    l2_values, ranks, windows = l2_values[len(l2_values) // 2:][:1], ranks[-1:], windows[-1:]
    exponents = [neutral]
  keep = start is not None and eval_queries is not None
  if keep:  # the earlier run's choice, at the grid point nearest it
    exponent = start.get('popularity', neutral)  # a choice saved before β was searched: EASE's
    best = (start['factorisation'] if start['factorisation'] in FACTORISATIONS else EIGEN,
            *(min(axis, key=lambda value, wanted=start[name]: abs(np.log(value / wanted)))
              for axis, name in zip((l2_values, ranks, windows), ('l2', 'rank', 'window'))),
            min(exponents, key=lambda value: abs(value - exponent)))
  factorisations = (best[0],) if keep else FACTORISATIONS
  # Each window's history counts, once: a query's sum of history rows is counts · table.
  counts_by_window = {}
  gram = (train.T @ train).toarray().astype(np.float32)
  spectrum = []  # G's leading eigenvectors and eigenvalues, once, if an eigen table is fitted
  fitted = {}  # by L2 weight: the factorisations' tables at the largest rank

  def tables_at(factorisation: str, l2: float) -> ItemItemTables:
    if l2 not in fitted:
      precision = baselines.ease_precision(gram, l2)
      fields = dict(l2=float(l2), window=windows[-1])
      fitted[l2] = {}
      if EIGEN in factorisations:
        if not spectrum:
          # G is symmetric positive semi-definite: its singular vectors are its eigenvectors.
          spectrum.extend(truncated_svd(gram, ranks[-1])[:2])
        fitted[l2][EIGEN] = _eigen_tables(kept, *spectrum, np.diag(precision).copy(),
                                          num_item_indices, **fields)
      if SVD in factorisations:
        fitted[l2][SVD] = _svd_tables(kept, baselines.ease_weights_of(precision), ranks[-1],
                                      num_item_indices, **fields)
    return fitted[l2][factorisation]

  evaluated = {}  # by point (factorisation, L2 weight, rank, window, popularity exponent)
  ranked = set()  # every point ranked (`evaluated` may let go of some)

  def evaluate(point: Tuple[str, float, int, int, float]) -> ItemItemTables:
    if point not in evaluated:
      factorisation, l2, rank, window, exponent = point
      tables = tables_at(factorisation, l2).truncated(rank).popularity_scaled(counts, exponent)
      ndcg = None
      if eval_queries is not None:
        if window not in counts_by_window:
          counts_by_window[window] = history_counts(
              eval_queries.queries[features.HISTORY_INDICES], window, num_item_indices)
        ndcg = _eval_ndcg(counts_by_window[window] @ tables.history, tables.candidates,
                          eval_queries)
      logging.debug('Item-item component, %s, L2 %g, rank %d, window %d, popularity %g: eval '
                    'NDCG@10 %s', factorisation, l2, rank, window, exponent,
                    'n/a' if ndcg is None else f'{ndcg:.4f}')
      evaluated[point] = dataclasses.replace(tables, window=window, eval_ndcg=ndcg)
      ranked.add(point)
    return evaluated[point]

  def better(point, than) -> bool:
    ndcg = evaluate(point).eval_ndcg
    return than is None or (ndcg is not None and ndcg > evaluate(than).eval_ndcg)

  axes = (FACTORISATIONS, l2_values, ranks, windows, exponents)
  if not keep:
    best = None
    for l2 in l2_values:
      for point in itertools.product(FACTORISATIONS, [l2], ranks, windows, [neutral]):
        best = point if better(point, best) else best
      # Only the best point's tables are held from one L2 weight to the next (a large
      # catalogue's tables take hundreds of megabytes per L2 weight).
      for point in [point for point in evaluated if point != best]:
        del evaluated[point]
      for value in [value for value in fitted if value != best[1]]:
        del fitted[value]
    if len(exponents) > 1:  # then along the popularity exponent (and the others) from there
      best = grid_search.best_point(axes, lambda point: evaluate(point).eval_ndcg, best)
  tables = evaluate(best)
  logging.info('Item-item component: %d items, %s, L2 %g, rank %d, window %d, popularity %g (%s)',
               len(kept), tables.factorisation, tables.l2, tables.rank, tables.window,
               tables.popularity, "the earlier run's choice" if keep else
               f'{len(ranked)} of {np.prod([len(axis) for axis in axes])} choices ranked')
  return tables
