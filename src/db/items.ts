import type pg from 'pg';
import type { Queryable } from './transaction.js';

export interface Item {
  id: number;
  /** The user who created it; null for items from before owners existed, or of a deleted user. */
  ownerId: string | null;
  name: string;
  description: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface ItemPatch {
  name?: string;
  description?: string | null;
}

interface ItemRow {
  id: number;
  owner_id: string | null;
  name: string;
  description: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, owner_id, name, description, created_at, updated_at';

function toItem(row: ItemRow): Item {
  return {
    id: row.id,
    ownerId: row.owner_id === null ? null : String(row.owner_id),
    name: row.name,
    description: row.description,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** Who asks for a change: the owner or an admin may make it. */
export interface Actor {
  userId: string;
  role: 'user' | 'admin';
}

export type WriteOutcome<T> = { kind: 'done'; value: T } | { kind: 'missing' | 'forbidden' };

/** The example resource's storage: parameterised SQL only. */
export class ItemRepository {
  constructor(private readonly db: pg.Pool) {}

  /** `db`: the client of a transaction when more must commit with the item (its outbox task). */
  async create(
    ownerId: string,
    name: string,
    description: string | null,
    db: Queryable = this.db,
  ): Promise<Item> {
    const { rows } = await db.query<ItemRow>(
      `INSERT INTO items (owner_id, name, description) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
      [ownerId, name, description],
    );
    return toItem(rows[0] as ItemRow);
  }

  async get(id: number): Promise<Item | undefined> {
    const { rows } = await this.db.query<ItemRow>(`SELECT ${COLUMNS} FROM items WHERE id = $1`, [id]);
    return rows[0] ? toItem(rows[0]) : undefined;
  }

  /** Keyset pagination: items after `afterId` in id order; one extra row tells whether more exist. */
  async list(limit: number, afterId: number): Promise<{ items: Item[]; hasMore: boolean }> {
    const { rows } = await this.db.query<ItemRow>(
      `SELECT ${COLUMNS} FROM items WHERE id > $1 ORDER BY id LIMIT $2`,
      [afterId, limit + 1],
    );
    return { items: rows.slice(0, limit).map(toItem), hasMore: rows.length > limit };
  }

  /** The change, made only when `actor` may make it (in the same statement: no gap to race). */
  async update(id: number, patch: ItemPatch, actor: Actor): Promise<WriteOutcome<Item>> {
    const { rows } = await this.db.query<ItemRow>(
      `UPDATE items SET
         name = CASE WHEN $2::boolean THEN $3 ELSE name END,
         description = CASE WHEN $4::boolean THEN $5 ELSE description END,
         updated_at = now()
       WHERE id = $1 AND ($6::boolean OR owner_id = $7) RETURNING ${COLUMNS}`,
      [
        id,
        patch.name !== undefined,
        patch.name ?? null,
        patch.description !== undefined,
        patch.description ?? null,
        actor.role === 'admin',
        actor.userId,
      ],
    );
    return rows[0] ? { kind: 'done', value: toItem(rows[0]) } : this.refusal(id);
  }

  async delete(id: number, actor: Actor): Promise<WriteOutcome<true>> {
    const { rowCount } = await this.db.query(
      'DELETE FROM items WHERE id = $1 AND ($2::boolean OR owner_id = $3)',
      [id, actor.role === 'admin', actor.userId],
    );
    return (rowCount ?? 0) > 0 ? { kind: 'done', value: true } : this.refusal(id);
  }

  /** Why a write changed nothing: the item is missing, or it is someone else's. */
  private async refusal(id: number): Promise<{ kind: 'missing' | 'forbidden' }> {
    const { rowCount } = await this.db.query('SELECT 1 FROM items WHERE id = $1', [id]);
    return { kind: (rowCount ?? 0) > 0 ? 'forbidden' : 'missing' };
  }
}

export function encodeCursor(lastId: number): string {
  return Buffer.from(JSON.stringify({ after: lastId })).toString('base64url');
}

/** The id after which the next page starts, or undefined for a cursor this service never issued. */
export function decodeCursor(cursor: string): number | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { after?: unknown };
    return Number.isSafeInteger(parsed.after) && (parsed.after as number) >= 0
      ? (parsed.after as number)
      : undefined;
  } catch {
    return undefined;
  }
}
