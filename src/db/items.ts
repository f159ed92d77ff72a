import type pg from 'pg';

export interface Item {
  id: number;
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
  name: string;
  description: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, name, description, created_at, updated_at';

function toItem(row: ItemRow): Item {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** The example resource's storage: parameterised SQL only. */
export class ItemRepository {
  constructor(private readonly db: pg.Pool) {}

  async create(name: string, description: string | null): Promise<Item> {
    const { rows } = await this.db.query<ItemRow>(
      `INSERT INTO items (name, description) VALUES ($1, $2) RETURNING ${COLUMNS}`,
      [name, description],
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

  async update(id: number, patch: ItemPatch): Promise<Item | undefined> {
    const { rows } = await this.db.query<ItemRow>(
      `UPDATE items SET
         name = CASE WHEN $2::boolean THEN $3 ELSE name END,
         description = CASE WHEN $4::boolean THEN $5 ELSE description END,
         updated_at = now()
       WHERE id = $1 RETURNING ${COLUMNS}`,
      [
        id,
        patch.name !== undefined,
        patch.name ?? null,
        patch.description !== undefined,
        patch.description ?? null,
      ],
    );
    return rows[0] ? toItem(rows[0]) : undefined;
  }

  async delete(id: number): Promise<boolean> {
    const { rowCount } = await this.db.query('DELETE FROM items WHERE id = $1', [id]);
    return (rowCount ?? 0) > 0;
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
